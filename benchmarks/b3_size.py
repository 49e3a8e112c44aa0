"""3. Trajectory size: what the recorder stores for the paper protocol vs storing full logits.

Paper protocol: 10 clients, 100 rounds, signals every 10 rounds (R = 10 recordings), 5,000 members of the target
client + 10,000 non-members (C = 15,000 candidates), V = 11 views (10 client uploads + the global model),
CIFAR-100 (100 classes). The recorder's arrays are allocated for real (`TrajectoryRecorder._allocate`) and also
saved to `.npz` to measure the file; the full-logits size is computed from the shapes
(C × V × R × 100 × 4 bytes in float32), not allocated (it would be 660 MB)."""
from __future__ import annotations
import tempfile, types
from pathlib import Path
import numpy as np

NAME = 'b3_size'
GOAL = 'recorder bytes / full-logits bytes <= 1/40'

def run(full: bool = False, threads: int = 1) -> dict:
    from cofedmid.partition import CandidatePool
    from cofedmid.trajectory import TrajectoryRecorder
    K, T, every, members, nonmembers, classes = 10, 100, 10, 5000, 10000, 100
    owner = np.r_[np.zeros(members, int), -np.ones(1000, int), np.repeat(np.arange(1, K), 1000)]
    assert len(owner) == members + nonmembers
    pool = CandidatePool(np.arange(len(owner)), owner)
    sim = types.SimpleNamespace(cfg=types.SimpleNamespace(rounds=T), n_clients=K)   # the shapes the recorder needs
    out = {}
    for dtype in ('float16', 'float32'):
        rec = TrajectoryRecorder(pool, record_every=every, dtype=dtype); rec._allocate(sim)
        with tempfile.TemporaryDirectory() as d:
            rec.traj.save(Path(d)/'t.npz'); file = (Path(d)/'t.npz').stat().st_size
        out[dtype] = {'bytes': rec.traj.nbytes, 'file_bytes': file, 'shape_RVC': list(rec.traj.loss.shape)}
    R, V, C = out['float16']['shape_RVC']
    logits = C * V * R * classes * 4
    logits_every_round = C * V * T * classes * 4
    ratio = out['float16']['bytes'] / logits
    return {'protocol': {'clients': K, 'rounds': T, 'record_every': every, 'candidates': C, 'views': V,
                         'recordings': R, 'classes': classes},
            'recorder': out, 'full_logits_bytes': logits, 'full_logits_computed_from_shapes': True,
            'full_logits_every_round_bytes': logits_every_round,
            'ratio_float16': ratio, 'ratio_float32': out['float32']['bytes'] / logits, 'goal_met': ratio <= 1 / 40,
            'summary': f"recorder {out['float16']['bytes']/2**20:.1f} MiB (float16; float32 {out['float32']['bytes']/2**20:.1f} MiB) "
                       f"vs full logits {logits/2**20:.0f} MiB = 1/{1/ratio:.0f} (goal <= 1/40 {'met' if ratio <= 1/40 else 'NOT met'})"}
