#!/usr/bin/env bash
# Measure the model zoo on this machine and write profiles/data/<hardware id>/<model>.json.
#
# For a GPU machine without network (torch and transformers installed, no diffusers): first, on a
# machine with network, `profiles/jobs/measure_zoo.sh --download-wheels wheels` fetches the wheels the
# profiler needs that such a machine lacks; carry `wheels/` with the job. Then, on the GPU machine:
#     WHEELS=wheels profiles/jobs/measure_zoo.sh
# Rehearse on a CPU:  DEVICE=cpu MODELS="sd15-tiny sdxl-tiny" OUT=/tmp/zoo profiles/jobs/measure_zoo.sh
#
# Settings (environment): DEVICE (cuda), MODELS (the six real models), OUT (profiles/data), WHEELS (a
# directory of wheels installed with --no-index before measuring), PYTHON (python3), EXTRA (more
# `bench profile` options, e.g. "--repeats 30"). Relative paths are taken from the repository root (the
# script changes to it). Use a virtual environment where the system Python is externally managed
# (PEP 668); download wheels on Linux x86_64 for a Linux x86_64 GPU machine. The profiler never changes
# the GPU's settings.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
# What the profiler needs beyond torch and transformers; pip installs only what is missing or too old.
NEEDED="diffusers typer nvidia-ml-py tomli"  # tomli: bench's TOML reader on Python 3.10

if [ "${1:-}" = "--download-wheels" ]; then
  # With their dependencies, as binary wheels; TARGET_PYTHON (e.g. 3.12) when the GPU machine's differs.
  "$PYTHON" -m pip download --only-binary=:all: ${TARGET_PYTHON:+--python-version "$TARGET_PYTHON"} -d "${2:?directory}" $NEEDED
  exit 0
fi
if [ -n "${WHEELS:-}" ]; then
  "$PYTHON" -m pip install --quiet --no-index --find-links "$WHEELS" $NEEDED
fi
"$PYTHON" - <<'PY'
import torch, transformers, diffusers
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}), "
      f"transformers {transformers.__version__}, diffusers {diffusers.__version__}")
PY
DEVICE="${DEVICE:-cuda}"
MODELS="${MODELS:-sd15 sd21 sdxl sd3-medium sd3-medium-no-t5 pixart-sigma}"
OUT="${OUT:-profiles/data}"
status=0
for m in $MODELS; do
  echo "== $m on $DEVICE"
  # One model per process: each starts with an empty device, so peak memory is the model's own.
  PYTHONPATH=. "$PYTHON" -m bench.cli profile --model "$m" --device "$DEVICE" --out-dir "$OUT" --overwrite ${EXTRA:-} || status=1
done
PYTHONPATH=. "$PYTHON" -m profiles.report "$OUT" || status=1
exit $status
