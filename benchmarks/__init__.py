"""Performance benchmarks of cofedmid, each measured against the usual way in the same run.

Run all of them with `python -m benchmarks` (or `make bench`); `--full` for bigger sizes; `--only 2,3` for some.
Each benchmark module has `NAME`, `GOAL` and `run(full, threads) -> dict`, writes `results/<NAME>.json` and prints
one summary line. Timings on a shared machine are noisy: ratios are measured in one run, interleaved, repeated,
and the medians reported."""
from __future__ import annotations
import contextlib, json, os, platform, statistics, sys, time
from pathlib import Path

RESULTS = Path(__file__).parent/'results'

def machine() -> dict:
    "What the figures were measured on."
    import torch
    cpu = platform.processor() or ''
    try: cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): pass
    return {'cpu': cpu, 'cores': os.cpu_count(), 'python': platform.python_version(), 'torch': torch.__version__,
            'cuda': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            'simd': torch.backends.cpu.get_cpu_capability(), 'load_avg_1min': round(os.getloadavg()[0], 2)}

def timeit(f, *args, **kwargs) -> tuple:
    "`(wall seconds, result)` of one call."
    t = time.perf_counter(); out = f(*args, **kwargs)
    return time.perf_counter() - t, out

def timeit2(f, *args, **kwargs) -> tuple:
    """`(wall seconds, process CPU seconds, result)` of one call. With one torch thread, CPU time is what the work
    costs, whatever other processes on a shared machine do; wall time also counts the waits for a core."""
    t, c = time.perf_counter(), time.process_time(); out = f(*args, **kwargs)
    return time.perf_counter() - t, time.process_time() - c, out

def median(xs) -> float: return float(statistics.median(xs))

def rss_bytes() -> int:
    "Current resident memory of this process."
    try: return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except OSError: return 0

def peak_rss_bytes() -> int:
    "Peak resident memory of this process so far."
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == 'darwin' else r * 1024

@contextlib.contextmanager
def recorder_seconds():
    "Time spent in `TrajectoryRecorder.observe` while the block runs: yields a one-item list that accumulates it."
    from cofedmid.trajectory import TrajectoryRecorder
    spent, real = [0.], TrajectoryRecorder.observe
    def timed(self, *a, **kw):
        t = time.perf_counter(); real(self, *a, **kw); spent[0] += time.perf_counter() - t
    TrajectoryRecorder.observe = timed
    try: yield spent
    finally: TrajectoryRecorder.observe = real

def write_result(name: str, res: dict) -> Path:
    "Write `res` (plus machine and time) to `results/<name>.json`."
    RESULTS.mkdir(parents=True, exist_ok=True)
    res = {'benchmark': name, 'when': time.strftime('%Y-%m-%d %H:%M:%S'), 'machine': machine(), **res}
    p = RESULTS/f'{name}.json'
    p.write_text(json.dumps(res, indent=1, default=float))
    return p
