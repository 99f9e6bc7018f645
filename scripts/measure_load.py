"""Time harness.data.dataset.load cold (parse cache deleted) and warm. Usage: python scripts/measure_load.py [DATA_DIR]"""
import shutil
import statistics
import sys
import time

from harness.data.dataset import load, parse_cache

d = sys.argv[1] if len(sys.argv) > 1 else "data/digit-recognizer"
def once(cold: bool) -> float:
    if cold:
        shutil.rmtree(parse_cache(d), ignore_errors=True)   # parse cache gone: parse + validate + hash + write cache
    t0 = time.perf_counter(); load(d); return time.perf_counter() - t0
cold = [once(True) for _ in range(5)]
warm = [once(False) for _ in range(7)]
print(f"cold: median {statistics.median(cold):.3f} s  {[round(x, 3) for x in cold]}")
print(f"warm: median {statistics.median(warm):.3f} s  {[round(x, 3) for x in warm]}")
