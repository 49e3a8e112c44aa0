"""6. End to end: wall time of `cofedmid run --preset quick` (both cells; by default they run at once, one per core)
in a fresh process, on real CIFAR-10 from `$COFEDMID_DATA`. Stopped after `limit` seconds (15 minutes) so that
`make bench` stays bounded."""
from __future__ import annotations
import os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

NAME = 'b6_end_to_end'
GOAL = 'cofedmid run --preset quick <= 5 minutes on 2 CPU cores'

def _cli() -> list:
    exe = Path(sys.executable).with_name('cofedmid')
    return [str(exe)] if exe.exists() else [sys.executable, '-m', 'cofedmid.cli']

def run(full: bool = False, threads: int = 1, limit: int = 900) -> dict:
    cli = _cli()
    data = os.environ.get('COFEDMID_DATA') or str(Path(__file__).resolve().parents[2]/'shared'/'data')
    if not Path(data).is_dir():
        return {'skipped': True, 'goal_met': None, 'summary': f'skipped: no dataset folder (set COFEDMID_DATA)'}
    out = Path(tempfile.mkdtemp(prefix='cofedmid-bench-'))
    try:
        cmd, what = [*cli, 'run', '--preset', 'quick', '--out', str(out/'run')], 'cofedmid run --preset quick'
        env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'} | {'COFEDMID_DATA': data}
        cpu = lambda: (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN))
        t, c = time.perf_counter(), cpu()
        try: r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=limit)
        except subprocess.TimeoutExpired:
            return {'command_timed': what, 'wall_s': None, 'goal_met': False, 'timeout_s': limit,
                    'summary': f"{what}: did not finish within {limit} s wall (goal <= 300 s NOT met)"}
        secs, csecs = time.perf_counter() - t, cpu() - c
    finally: shutil.rmtree(out, ignore_errors=True)
    if r.returncode: raise RuntimeError(f"{what} failed:\n{r.stderr[-3000:]}")
    tail = [l for l in r.stdout.strip().splitlines() if l.strip()][-1:]
    return {'command_timed': what, 'wall_s': secs, 'cpu_s': csecs, 'goal_met': secs <= 300,
            'last_output_line': tail[0] if tail else '',
            'summary': f"{what}: {secs:.0f} s wall, {csecs:.0f} s CPU over all threads (goal <= 300 s wall "
                       f"{'met' if secs <= 300 else 'NOT met'})"}
