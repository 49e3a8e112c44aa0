"""1. Simulator overhead: one `FedAvg` round vs a bare PyTorch loop doing the same training.

Both train the same small CNN (channels-last) from the same global model on the same clients' samples (10 clients,
1 local epoch, batch 64, SGD with momentum and weight decay) and average the updates; the bare loop keeps the
images pre-normalised in float32, the simulator keeps uint8 and normalises per batch. No evaluation in either.
Rounds are timed alternately, and the median of the per-pair ratios is reported: of process CPU time (the
primary figure with one thread: steady on a shared machine) and of wall time."""
from __future__ import annotations
import numpy as np, torch, torch.nn.functional as F
from . import timeit2, median

NAME = 'b1_overhead'
GOAL = 'simulator round time / bare PyTorch loop time <= 1.05'

def _bare_round(model, params, X, Y, clients, bs, lr, mom, wd, gen):
    "One FedAvg round written as a plain PyTorch loop."
    from cofedmid.fl import set_flat, get_flat
    n = sum(len(c) for c in clients); new = params.clone()
    for c in clients:
        set_flat(model, params); model.train()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=mom, weight_decay=wd)
        perm = c[torch.randperm(len(c), generator=gen)]
        for b in range(0, len(perm), bs):
            bi = perm[b:b + bs]
            loss = F.cross_entropy(model(X[bi]), Y[bi])
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        new.add_(get_flat(model) - params, alpha=len(c) / n)
    return new

def run(full: bool = False, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    from cofedmid.data import synthetic_dataset, to_float
    from cofedmid.partition import Federation
    from cofedmid.fl import FedAvg, FLConfig, get_flat
    from cofedmid.models import get_model
    K, per, reps = 10, (2500 if full else 300), (7 if full else 9)
    data = synthetic_dataset(n_classes=10, n_train=K*per + 200, n_test=100, size=32, seed=0)
    fed = Federation.split(data.y_train.numpy(), K, size=per, n_ofl=100, n_val=100, seed=0)
    cfg = FLConfig(rounds=10**6, eval_every=10**6, batch_size=64, lr=0.05, progress=False, device='cpu')
    sim = FedAvg(data, fed, 'cnn', cfg)
    model = get_model('cnn', 10, 3, seed=0).to(memory_format=torch.channels_last)
    X = to_float(data.x_train, data.mean, data.std).contiguous(memory_format=torch.channels_last)
    clients = [torch.as_tensor(c) for c in fed.clients]
    params, gen = get_flat(model), torch.Generator().manual_seed(0)
    bare = lambda: _bare_round(model, params, X, data.y_train, clients, 64, 0.05, 0.9, 5e-4, gen)
    sim.run_round(); bare()                                   # warm-up
    ts, tb, cs, cb = [], [], [], []
    for _ in range(reps):
        w, c, _ = timeit2(sim.run_round); ts.append(w); cs.append(c)
        w, c, _ = timeit2(bare); tb.append(w); cb.append(c)
    wall = [s / b for s, b in zip(ts, tb)]; cpu = [s / b for s, b in zip(cs, cb)]
    r = median(cpu if threads == 1 else wall)
    return {'clients': K, 'per_client': per, 'batch_size': 64, 'image': '3x32x32 synthetic', 'threads': threads, 'reps': reps,
            'sim_wall_s': ts, 'bare_wall_s': tb, 'sim_cpu_s': cs, 'bare_cpu_s': cb, 'wall_ratios': wall, 'cpu_ratios': cpu,
            'median_wall_ratio': median(wall), 'median_cpu_ratio': median(cpu), 'ratio': r,
            'ratio_basis': 'process CPU time' if threads == 1 else 'wall time',
            'sim_images_per_s': K*per / median(ts), 'bare_images_per_s': K*per / median(tb), 'goal_met': r <= 1.05,
            'summary': f"FedAvg round / bare loop = {r:.3f} ({'CPU' if threads == 1 else 'wall'} time, median of {reps}; "
                       f"wall {median(wall):.3f}) - goal <= 1.05 {'met' if r <= 1.05 else 'NOT met'}; "
                       f"simulator {K*per/median(ts):.0f} img/s wall"}
