"""8. Flower deployment rounds: the explanation's deployment steps run verbatim on 127.0.0.1 (a SuperLink, three
SuperNodes on their own partition files, `flwr run`; `deployment.py`), with 6 rounds instead of 3, against the same
experiment in-process. Reports the median round time of rounds 2-6 on both (round 1 includes the set-up) and their
ratio, the wall time of each step, and checks that the two runs' results are identical."""
from __future__ import annotations
import json, os, shutil, tempfile, time
from pathlib import Path
import numpy as np

NAME = 'b8_flower_rounds'
GOAL = 'deployed Flower round time <= 2x the in-process round time (CIFAR-10, 3 clients x 100 images, CoFedMID pair, localhost)'
ROUNDS = 6

def run(full: bool = False, threads: int = 1) -> dict:
    try: import flwr  # noqa: F401
    except ImportError: return {'skipped': True, 'goal_met': None, 'summary': "skipped: needs pip install 'cofedmid[flower]'"}
    if not os.environ.get('COFEDMID_DATA'): return {'skipped': True, 'goal_met': None, 'summary': 'skipped: set COFEDMID_DATA'}
    import pandas as pd
    from cofedmid.experiment import load_config, run_experiment
    from .deployment import run_documented, documented_steps
    work = Path(tempfile.mkdtemp(prefix='cofedmid-bench-flower-'))
    try:
        dep = run_documented(work, lambda y: y.replace('rounds: 3', f'rounds: {ROUNDS}'))
        secret = next(l.split()[0].split('=')[1] for l in documented_steps()[1] if l.startswith('COFEDMID_COALITION_SECRET='))
        old, os.environ['COFEDMID_COALITION_SECRET'] = os.environ.get('COFEDMID_COALITION_SECRET'), secret
        try:
            t = time.perf_counter()
            run_experiment(load_config(dep['config']), work/'inprocess', verbose=False)
            ip_wall = time.perf_counter() - t
        finally:
            if old is None: os.environ.pop('COFEDMID_COALITION_SECRET')
            else: os.environ['COFEDMID_COALITION_SECRET'] = old
        same = pd.read_csv(dep['out']/'results.csv').equals(pd.read_csv(work/'inprocess'/'results.csv'))
        assert same, 'the deployed run and the in-process run differ'
        d_h, i_h = (json.loads((p/'history.json').read_text()) for p in (dep['out'], work/'inprocess'))
    finally: shutil.rmtree(work, ignore_errors=True)
    d_r, i_r = [h['seconds'] for h in d_h], [h['seconds'] for h in i_h]
    d_med, i_med = float(np.median(d_r[1:])), float(np.median(i_r[1:]))
    ratio = d_med / i_med
    return {'rounds': ROUNDS, 'deployed_round_s': d_r, 'inprocess_round_s': i_r, 'deployed_median_s': d_med,
            'inprocess_median_s': i_med, 'ratio': ratio, 'deployment_wall_s': dep['seconds'], 'inprocess_wall_s': ip_wall,
            'steps_s': dep['steps'], 'results_identical': same, 'goal_met': ratio <= 2,
            'summary': f"deployed round {d_med:.2f} s vs in-process {i_med:.2f} s (median of rounds 2-{ROUNDS}) = {ratio:.1f}x "
                       f"(goal <= 2x {'met' if ratio <= 2 else 'NOT met'}); whole deployment {dep['seconds']:.0f} s, "
                       f"results identical"}
