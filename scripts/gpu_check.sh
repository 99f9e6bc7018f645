#!/usr/bin/env bash
# The GPU path, checked from a clean checkout on a machine with an NVIDIA GPU (about 10 minutes with
# pip's downloads): a fresh virtual environment with the [gpu] engine, the engine check, the GPU
# tests, a --quick run that trains on the GPU, and the CUDA execution provider's benchmark rows
# beside the CPU ones. Prints the figures; exits non-zero when any step fails.
#
#   bash scripts/gpu_check.sh [WORKDIR]      # default: a new temporary folder
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d -t harness-gpu-XXXX)}
mkdir -p "$work"
say() { printf '\n== %s\n' "$*" >&2; }
t0=$(date +%s)

say "GPU"
nvidia-smi -L || { echo "gpu_check: nvidia-smi lists no GPU; nothing to check" >&2; exit 3; }

say "install: python3 -m venv + pip install -e '.[gpu]' (tensorflow[and-cuda], onnxruntime-gpu)"
python3 -m venv "$work/.venv"
# shellcheck disable=SC1091
. "$work/.venv/bin/activate"
pip install -q --upgrade pip
pip install -q -e "$root[gpu]" pytest pytest-timeout
du -sh "$work/.venv" | awk '{print "venv size: " $1}'

say "engines and devices"
python - <<'EOF'
from harness.core.device import check_engines, device_label, cuda_provider, nvidia_gpus
print("engines:", check_engines())
print("training device:", device_label())
print("ONNX Runtime CUDA provider:", cuda_provider())
print("GPUs:", nvidia_gpus())
EOF

say "GPU tests"
(cd "$root" && python -m pytest -q -rs tests/test_device.py)

say "harness run --all --quick --int8 --time-limit none (the fixed quick recipes, trained on the GPU)"
cd "$work"
t1=$(date +%s)
harness run --all --quick --int8 --time-limit none --new --data-dir "$root/data/digit-recognizer" --no-report
echo "quick run: $(( $(date +%s) - t1 )) s"

say "the run's devices and the CUDA rows"
python - <<'EOF'
import json
from pathlib import Path
run = sorted(p for p in Path("runs").iterdir() if (p / "manifest.json").is_file())[-1]
print("devices:", json.dumps(json.loads((run / "manifest.json").read_text())["devices"], indent=1))
for m in ("ann", "cnn_small", "cnn_deep", "ensemble"):
    b = run / m / "bench.json"
    if b.is_file():
        s = json.loads(b.read_text())["summary"]
        print(f"{m:10s} CPU p50 b1 {s['p50_ms_b1']:.3f} ms, {s['throughput_ips']:,.0f} img/s | "
              f"CUDA p50 b1 {s.get('cuda_p50_ms_b1')} ms, {s.get('cuda_throughput_ips')} img/s")
EOF
echo "gpu_check: all steps passed in $(( $(date +%s) - t0 )) s"
