#!/bin/bash
# Run a command as on a slow AVX2-only machine, on a faster one: how a time-limited run plans and
# keeps its limit where a fold takes several times as long (an AVX2 EPYC of family 23: probe
# 368-386 images/s), without such a machine at hand.
#
#   sudo SHARE=50 bash scripts/slow_machine.sh python scripts/measure_run.py -- --all --jobs 2 --time-limit 10m
#
# What it changes for the command and its children:
# - /proc/cpuinfo (bind-mounted in a mount namespace of their own) shows family 23, no AVX-512,
#   VNNI or bf16: harness picks the AVX2 class's settings (float32 training, no INT8 by default);
# - oneDNN is limited to AVX2 kernels (ONEDNN_MAX_CPU_ISA), as such a CPU has no others;
# - every process runs on one core (CORE, default 1) for SHARE % of its time (a cgroup v1 CPU
#   quota, default 50): two training slots share it fairly, each at a quarter of a core. Pass
#   --jobs 2 to harness: it sees one core in its affinity and would use one slot.
# ONNX Runtime picks its kernels from the CPU itself, so benchmarks use this CPU's; a cgroup's
# quota throttles in 10 ms periods, so latencies are not an AVX2 machine's either. Use it for
# wall times, plans and accuracy, never for latency figures. Needs root and cgroup v1's cpu
# controller (/sys/fs/cgroup/cpu); HARNESS_CACHE should be a scratch cache (its calibration is
# this emulation's, not the machine's).
set -euo pipefail
CORE=${CORE:-1}
SHARE=${SHARE:-50}
[ $# -gt 0 ] || { echo "usage: $0 COMMAND..." >&2; exit 2; }
group=/sys/fs/cgroup/cpu/harness-slow
[ -d /sys/fs/cgroup/cpu ] || { echo "slow_machine: no cgroup v1 cpu controller at /sys/fs/cgroup/cpu" >&2; exit 1; }
mkdir -p "$group"
echo 10000 > "$group/cpu.cfs_period_us"
echo $((SHARE * 100)) > "$group/cpu.cfs_quota_us"
echo $$ > "$group/cgroup.procs"

cpuinfo=$(mktemp)
python3 - "$cpuinfo" <<'EOF'
import sys
drop = ("avx512", "avx_vnni", "amx", "vaes", "vpclmulqdq", "gfni")
out = []
for line in open("/proc/cpuinfo"):
    key = line.split(":")[0].strip()
    if key == "flags":
        line = "flags\t\t: " + " ".join(f for f in line.split(":", 1)[1].split() if not f.startswith(drop)) + "\n"
    elif key == "cpu family":
        line = "cpu family\t: 23\n"
    elif key == "model":
        line = "model\t\t: 49\n"
    elif key == "model name":
        line = "model name\t: AMD EPYC (emulated: AVX2 only, slowed by scripts/slow_machine.sh)\n"
    out.append(line)
open(sys.argv[1], "w").writelines(out)
EOF
export ONEDNN_MAX_CPU_ISA=AVX2
exec taskset -c "$CORE" unshare -m bash -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' "$cpuinfo" "$@"
