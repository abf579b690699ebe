"""Our BERT and BEiT in Flax, the hybrid built from them, and the Hugging Face checkpoints they load.

  configs.py      BertConfig / BeitConfig, read from a checkpoint's config.json
  layers.py       Dense, activations, self-attention, output blocks, DropPath, LayerScale (and their CPU forms)
  bert.py         BERT's post-LN encoder layers
  beit.py         BEiT: patch embedding, position embeddings and biases, pre-LN layers, pooling
  hybrid.py       HybridClassifier: BEiT -> adapter + bridge LayerNorm -> BERT layers -> pool -> head
  checkpoints.py  local dirs / hub ids -> our trees: name maps, shape checks, casts, load reports
  build.py        a config's model with its weights: random init of what no checkpoint fills, placement, the
                  frozen mask, FLOPs
  resize.py       BEiT's position parameters for another image size
"""
