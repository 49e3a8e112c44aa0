"""2. Attack signals: per-sample gradient cosine, difference and norm for N candidates and K client updates.

Reference (the FedMIA way): for each client k, an Opacus `GradSampleModule` of the global model θ^t computes the
per-sample gradients g_i of the candidates at batch size 10, then cos(−g_i, Δ_k), ‖Δ_k‖² − ‖Δ_k + g_i‖² and ‖g_i‖.
cofedmid: `grad_signals` computes g_i·Δ_k for all k and ‖g_i‖ once per round from one forward and one backward
pass per batch of 256 candidates (per-layer rules, no per-sample gradient held for the Linear layers), and the
three signals follow as `Trajectory.cosine()` / `grad_diff()` do. Also timed on a subset: the `torch.func` path
(`grad_dots`: one jvp per view, `grad_norms`: chunked vmap(grad)). The client updates are real: each client
trains a few SGD steps from θ^t on its own samples. Runs of cofedmid and of the reference alternate; results must
agree within float tolerance (asserted)."""
from __future__ import annotations
import copy, warnings
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from . import timeit2, median

NAME = 'b2_signals'
GOAL = '>= 20x faster than Opacus per-sample gradients at batch 10 per client, N = 2,000, K = 10; equal results'

def reference_client(model, theta, delta, x, y, batch=10):
    "FedMIA-style signals of one client: Opacus per-sample gradients at batch size `batch`."
    from opacus import GradSampleModule
    from cofedmid.fl import set_flat
    # contiguous memory format: Opacus 1.6's conv per-sample gradients are wrong for channels-last tensors
    # (zeros / wrong values, checked against batch-1 autograd on torch 2.14)
    m = set_flat(copy.deepcopy(model).to(memory_format=torch.contiguous_format), theta)
    x = x.contiguous()
    for mod in m.modules():                               # Opacus cannot hook in-place activations
        if isinstance(mod, nn.ReLU): mod.inplace = False
    gm = GradSampleModule(m.train(), loss_reduction='sum')                     # Opacus records activations in training mode only (no dropout/BN here)
    cos, diff, norm = [], [], []
    dn2 = delta.pow(2).sum()
    for b in range(0, len(y), batch):
        gm.zero_grad(set_to_none=True)
        F.cross_entropy(gm(x[b:b + batch]), y[b:b + batch], reduction='sum').backward()
        G = torch.cat([p.grad_sample.reshape(len(p.grad_sample), -1) for p in gm.parameters()], 1)
        for p in gm.parameters(): p.grad_sample = None
        cos.append(F.cosine_similarity(-G, delta[None], dim=1, eps=1e-12))
        diff.append(dn2 - (delta[None] + G).pow(2).sum(1))
        norm.append(G.norm(dim=1))
    gm._close()
    return torch.cat(cos), torch.cat(diff), torch.cat(norm)

def fast_signals(model, theta, deltas, x, y, batch=256, method='auto'):
    "cofedmid: (cos (K,N), diff (K,N), norm (N,)) from `grad_signals`, once for all clients."
    from cofedmid.trajectory import grad_signals
    gd, gn = [], []
    for b in range(0, len(y), batch):
        d, n = grad_signals(model, theta, deltas, x[b:b + batch], y[b:b + batch], method=method)
        gd.append(d); gn.append(n)
    gdot, gnorm = torch.cat(gd, 1), torch.cat(gn)
    dnorm = torch.stack([d.norm() for d in deltas])
    return gdot / (gnorm[None] * dnorm[:, None]).clamp_min(1e-12), 2 * gdot - gnorm[None] ** 2, gnorm

def _setup(N, K, seed=0):
    from cofedmid.data import synthetic_dataset, to_float
    from cofedmid.models import get_model
    from cofedmid.fl import get_flat
    data = synthetic_dataset(n_classes=10, n_train=N + K * 64, n_test=10, size=32, seed=seed)
    x = to_float(data.x_train, data.mean, data.std).contiguous(memory_format=torch.channels_last)
    y = data.y_train
    model = get_model('cnn', 10, 3, seed=seed).to(memory_format=torch.channels_last)
    # bring θ^t away from the initialisation, then make K real client updates (4 SGD steps of batch 16 each)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for b in range(0, N, 64):
        opt.zero_grad(); F.cross_entropy(model(x[b:b + 64]), y[b:b + 64]).backward(); opt.step()
    theta, deltas = get_flat(model), []
    for k in range(K):
        m = copy.deepcopy(model); o = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        for s in range(4):
            i = slice(N + k * 64 + 16 * s, N + k * 64 + 16 * (s + 1))
            o.zero_grad(); F.cross_entropy(m(x[i]), y[i]).backward(); o.step()
        deltas.append(get_flat(m) - theta)
    return model.eval(), theta, deltas, x[:N], y[:N]

def _check(a, b, what):
    "Assert `a` ≈ `b` relative to the scale of `b`."
    err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
    assert err < 1e-3, f"{what}: cofedmid differs from the Opacus reference by {err:.2e} (relative to its max)"
    return err

def run(full: bool = False, threads: int = 1) -> dict:
    torch.set_num_threads(threads)
    warnings.filterwarnings('ignore', message='Full backward hook')
    N, K, n_func = (5000 if full else 2000), 10, 500
    model, theta, deltas, x, y = _setup(N, K)
    fast_signals(model, theta, deltas, x[:256], y[:256])           # warm-up
    ours, ref, outs = [], [], None
    ref_cos, ref_diff, ref_norm = [], [], []
    for k in range(K):                                            # alternate: cofedmid (all K) ... reference (client k)
        if k in (0, K // 2, K - 1):
            w, c, outs = timeit2(fast_signals, model, theta, deltas, x, y); ours.append((w, c))
        w, c, (rc, rd, rn) = timeit2(reference_client, model, theta, deltas[k], x, y); ref.append((w, c))
        ref_cos.append(rc); ref_diff.append(rd); ref_norm.append(rn)
    cos, diff, norm = outs
    errs = {'cos': _check(cos, torch.stack(ref_cos), 'cosine'), 'diff': _check(diff, torch.stack(ref_diff), 'grad diff'),
            'norm': _check(norm, ref_norm[0], 'grad norm')}
    # the torch.func path (jvp per view + vmap(grad)) on a subset, for comparison
    wf, cf, (fc, fd, fn) = timeit2(fast_signals, model, theta, deltas, x[:n_func], y[:n_func], method='func')
    _check(fc, cos[:, :n_func], 'func-path cosine'); _check(fn, norm[:n_func], 'func-path norm')
    basis = 1 if threads == 1 else 0                              # CPU time with one thread, else wall time
    t_ours, t_ref = median([o[basis] for o in ours]), sum(r[basis] for r in ref)
    speed = t_ref / t_ours
    t_func = (cf if threads == 1 else wf) * N / n_func
    return {'N': N, 'K': K, 'model': 'SmallCNN (620k parameters), 3x32x32, 10 classes', 'threads': threads,
            'time_basis': 'process CPU time' if basis else 'wall time',
            'ours_s': t_ours, 'reference_s': t_ref, 'speedup': speed,
            'ours_runs_wall_cpu': ours, 'reference_per_client_wall_cpu': ref,
            'func_path_s_scaled_to_N': t_func, 'func_path_measured_on': n_func, 'speedup_vs_func_path': t_func / t_ours,
            'max_rel_error': errs, 'goal_met': speed >= 20,
            'gpu': 'skipped: no CUDA device' if not torch.cuda.is_available() else 'not measured',
            'summary': f"N={N}, K={K}: cofedmid {t_ours:.1f} s vs Opacus batch-10 per client {t_ref:.1f} s = {speed:.1f}x "
                       f"(goal >= 20x {'met' if speed >= 20 else 'NOT met'}); jvp+vmap path {t_func:.1f} s; "
                       f"max rel. error {max(errs.values()):.1e}"}
