"""5. Scaling: round time and peak memory as clients grow (fixed total data), and memory as rounds grow.

Clients: K ∈ {10, 20, 50, 100} share 3,000 training images (3×32×32, synthetic); each setting runs in its own
process (so its peak resident memory is its own) for 2 rounds after a warm-up round, no evaluation; its peak memory is measured over those rounds (Linux VmHWM
reset after set-up), the set-up peak is reported separately.
Rounds: one process runs FedAvg (10 clients × 100 images) with a `TrajectoryRecorder` (gradient signals on,
recording every 5 rounds, 700 candidates; 20 rounds, `--full` 100) and reads its resident memory after every round, before and
after glibc's `malloc_trim` (which returns freed-but-cached heap to the OS): the trimmed size of the ordinary rounds (not
the recording ones) must not grow."""
from __future__ import annotations
import ctypes, json, os, subprocess, sys, time
import numpy as np

NAME = 'b5_scaling'
_EVERY = 5        # the rounds benchmark records the trajectory every this many rounds
GOAL = 'round time and memory roughly flat in K at fixed total data; memory flat in rounds (except trajectory scalars)'

def _child_clients(K, total, threads):
    import torch
    torch.set_num_threads(threads)
    from cofedmid.data import synthetic_dataset
    from cofedmid.partition import Federation
    from cofedmid.fl import FedAvg, FLConfig
    from . import peak_rss_bytes, timeit2
    data = synthetic_dataset(n_classes=10, n_train=total + 200, n_test=100, size=32, seed=0)
    fed = Federation.split(data.y_train.numpy(), K, size=total // K, n_ofl=100, n_val=100, seed=0)
    sim = FedAvg(data, fed, 'cnn', FLConfig(rounds=10**6, eval_every=10**6, batch_size=64, progress=False, device='cpu'))
    sim.run_round()
    setup_peak = peak_rss_bytes()
    base = _reset_peak()
    ts = [timeit2(sim.run_round)[:2] for _ in range(2)]
    return {'K': K, 'total': total, 'wall_s': [t[0] for t in ts], 'cpu_s': [t[1] for t in ts], 'setup_peak_rss': setup_peak,
            'rss_before_rounds': base, 'peak_rss': _hwm() or peak_rss_bytes()}

def _hwm() -> int:
    "Peak resident memory since the last `_reset_peak` (Linux VmHWM), 0 if unknown."
    try: return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM'))
    except (OSError, StopIteration): return 0

def _reset_peak() -> int:
    "Reset the peak-memory mark to the current resident memory (Linux); returns that."
    from . import rss_bytes
    try: open('/proc/self/clear_refs', 'w').write('5')
    except OSError: pass
    return rss_bytes()

def _child_rounds(rounds, threads):
    import torch
    torch.set_num_threads(threads)
    from cofedmid.data import synthetic_dataset
    from cofedmid.partition import Federation, CandidatePool
    from cofedmid.fl import FedAvg, FLConfig
    from cofedmid.trajectory import TrajectoryRecorder
    from . import rss_bytes
    data = synthetic_dataset(n_classes=10, n_train=1000 + 400, n_test=100, size=32, seed=0)
    fed = Federation.split(data.y_train.numpy(), 10, size=100, n_ofl=200, n_val=200, seed=0)
    pool = CandidatePool.make(fed, n_per_client=50, n_ofl=200, seed=0)
    rec = TrajectoryRecorder(pool, record_every=_EVERY)
    sim = FedAvg(data, fed, 'cnn', FLConfig(rounds=rounds, eval_every=5, batch_size=64, progress=False, device='cpu'),
                 observers=[rec])
    try: trim = ctypes.CDLL('libc.so.6').malloc_trim               # glibc: hand freed-but-cached heap back to the OS
    except (OSError, AttributeError): trim = lambda pad: 0
    mem, trimmed, secs = [], [], []
    for _ in range(rounds):
        row = sim.run_round(); mem.append(rss_bytes()); secs.append(row['seconds'])
        trim(0); trimmed.append(rss_bytes())                         # what is still allocated: a leak would stay
    return {'rounds': rounds, 'rss_after_round': mem, 'rss_after_round_trimmed': trimmed, 'round_seconds': secs,
            'trajectory_bytes': rec.traj.nbytes}

def _spawn(args, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, '-m', 'benchmarks.b5_scaling', *map(str, args)], capture_output=True, text=True,
                         env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode: raise RuntimeError(f"child {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

def run(full: bool = False, threads: int = 1) -> dict:
    total = 25000 if full else 3000
    clients = [_spawn(['clients', K, total, threads], threads) for K in (10, 20, 50, 100)]
    rounds = _spawn(['rounds', 100 if full else 20, threads], threads)
    # The resident size right after a round keeps the heap that glibc cached from freed buffers (its level changes at
    # each recording round and varies from run to run), so growth is judged on the size after `malloc_trim`: the
    # memory still allocated. Ordinary rounds after the first recording: rounds 6-9 against the last 4.
    raw, mem = np.array(rounds['rss_after_round'], float), np.array(rounds['rss_after_round_trimmed'], float)
    r = np.arange(1, len(mem) + 1)
    plain = (r > _EVERY) & (r % _EVERY != 0)
    slope = float(np.polyfit(r[plain], mem[plain], 1)[0])                 # bytes per round, ordinary rounds
    growth = float(mem[plain][-4:].max() - mem[plain][:4].max())
    spikes = raw[r % _EVERY == 0]
    t10, t100 = np.median(clients[0]['cpu_s']), np.median(clients[-1]['cpu_s'])
    m10, m100 = clients[0]['peak_rss'], clients[-1]['peak_rss']
    ok = growth < 32 * 2**20
    return {'total_images': total, 'by_clients': clients, 'by_rounds': rounds, 'rss_slope_bytes_per_round': slope, 'rss_growth_after_first_recording': growth,
            'cpu_time_ratio_100_vs_10_clients': t100 / t10, 'peak_rss_ratio_100_vs_10_clients': m100 / m10,
            'goal_met': bool(ok and t100 / t10 < 1.5 and m100 / m10 < 1.5), 'threads': threads,
            'rss_after_recording_rounds': spikes.tolist(),
            'summary': f"K 10->100 at {total} images: round CPU time x{t100/t10:.2f}, peak memory x{m100/m10:.2f} "
                       f"({m10/2**20:.0f}->{m100/2**20:.0f} MiB); allocated after rounds 6-9 {mem[plain][:4].max()/2**20:.0f} MiB, "
                       f"after the last ordinary rounds {mem[plain][-4:].max()/2**20:.0f} MiB (resident before trimming "
                       f"{raw.min()/2**20:.0f}-{raw.max()/2**20:.0f} MiB; trajectory {rounds['trajectory_bytes']/1024:.0f} KiB preallocated)"}

if __name__ == '__main__':
    kind, *a = sys.argv[1:]
    res = _child_clients(int(a[0]), int(a[1]), int(a[2])) if kind == 'clients' else _child_rounds(int(a[0]), int(a[1]))
    print(json.dumps(res))
