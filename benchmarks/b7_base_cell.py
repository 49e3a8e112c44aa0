"""7. The base protocol: one cell of `cofedmid run --preset base` (CIFAR-10, no defense, every client a target) on
real CIFAR-10 from `$COFEDMID_DATA`, with every core. Reports the cell's wall time, the share spent recording the
server's view (the `TrajectoryRecorder`), the share spent scoring the attacks, and the calibration it exists for:
the strongest trajectory attack's AUC vs OFL averaged over the targets, and the test accuracy."""
from __future__ import annotations
import os, shutil, tempfile, time
from pathlib import Path

NAME = 'b7_base_cell'
GOAL = ('cofedmid run --preset base <= 5 minutes on 2 CPU cores, with the strongest trajectory attack at mean AUC '
        '>= 0.80 vs OFL (upload view) over the targets and test accuracy >= 0.50')
TRAJECTORY = ('loss_series', 'avg_cosine', 'fta_loss', 'fta_conf', 'fedmia_1', 'fedmia_2', 'seqmia')

def run(full: bool = False, threads: int = 1) -> dict:
    data = os.environ.get('COFEDMID_DATA') or str(Path(__file__).resolve().parents[2]/'shared'/'data')
    if not Path(data).is_dir():
        return {'skipped': True, 'goal_met': None, 'summary': 'skipped: no dataset folder (set COFEDMID_DATA)'}
    import torch
    from cofedmid.experiment import preset, run_experiment, summarize
    from . import recorder_seconds
    cfg, _ = preset('base', data_dir=data, threads=os.cpu_count() or 1)
    out = Path(tempfile.mkdtemp(prefix='cofedmid-bench-'))
    try:
        with recorder_seconds() as spent:
            t = time.perf_counter()
            res = run_experiment(cfg, out/'run', verbose=False)
            wall = time.perf_counter() - t
        log = (out/'run'/'log.txt').read_text()
    finally: shutil.rmtree(out, ignore_errors=True)
    attack_s = float(log.split('(attacks ')[1].split(' s')[0])
    s = summarize(res)
    s = s[(s.view == 'upload') & (s.nonmembers == 'ofl') & s.attack.isin(TRAJECTORY)].set_index('attack')
    best = s.auc_mean.idxmax()
    auc, lo, hi, acc = s.auc_mean[best], s.auc_ci_low[best], s.auc_ci_high[best], s.test_acc_mean[best]
    met = wall <= 300 and auc >= 0.80 and acc >= 0.50
    return {'wall_s': wall, 'recorder_s': spent[0], 'recorder_share': spent[0]/wall, 'attacks_s': attack_s,
            'attacks_share': attack_s/wall, 'threads': cfg.threads, 'strongest_trajectory_attack': best,
            'auc_mean': auc, 'auc_ci': [lo, hi], 'n_targets': int(s.n_targets[best]), 'test_acc': acc,
            'per_attack_auc': s.auc_mean.round(4).to_dict(), 'goal_met': met,
            'summary': f"base cell {wall:.0f} s wall (recorder {spent[0]/wall:.0%}, attacks {attack_s/wall:.0%}); strongest "
                       f"trajectory attack {best} AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] over {int(s.n_targets[best])} targets, "
                       f"test accuracy {acc:.3f} (goal {'met' if met else 'NOT met'})"}
