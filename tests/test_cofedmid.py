"CoFedMID invariants on tiny synthetic federations, and a slow CIFAR-10 check of Loss-Series AUC and accuracy."
import math, os
import numpy as np
import pytest
import torch
from cofedmid.core import load_state
from cofedmid.data import synthetic_dataset
from cofedmid.partition import Federation
from cofedmid.fl import FedAvg, FLConfig, fedavg_weights
from cofedmid.models import get_model
from cofedmid.cofedmid import (CoFedMID, EXP3, class_guided_partition, class_schedule, compensation_loss, neutral_noise,
                               pairwise_neutral_noise, perturb_mask, ABLATIONS, COALITION_PRESETS, SECRET_ENV)
from cofedmid.partition import pick_clients, CandidatePool
import itertools, json, pickle

@pytest.fixture(scope='module')
def tiny_fed():
    data = synthetic_dataset(n_classes=6, n_train=420, n_test=96, size=8, signal=0.5, seed=1)
    f = Federation.split(data.y_train.numpy(), n_clients=5, size=64, n_ofl=40, n_val=50, seed=1)
    fed = Federation([c[:n] for c, n in zip(f.clients, (36, 48, 64, 64, 64))], f.ofl, f.val, f.n_total)
    fed.check()
    return data, fed

def _run(data, fed, defenses=(), rounds=4, fraction=1.0, seed=0, observers=(), out_dir=None, resume=False):
    cfg = FLConfig(rounds=rounds, batch_size=16, lr=0.05, client_fraction=fraction, seed=seed, progress=False)
    sim = FedAvg(data, fed, get_model('cnn', data.n_classes, 3, seed=seed, width=8), cfg, list(defenses), list(observers))
    sim.run(out_dir=out_dir, resume=resume)
    return sim

class _Spy(CoFedMID):
    "Keeps the recycled samples and the noise actually added to each upload."
    def __init__(self, *a, **kw): super().__init__(*a, **kw); self._spy = {'sel': [], 'noise': []}
    def select_samples(self, ctx, idx):
        sel = super().select_samples(ctx, idx)
        self._spy['sel'].append((ctx.round, ctx.client, self._tmp['msg'], self._tmp['recycled'][ctx.client].copy()))
        return sel
    def coordinate(self, sim, rnd, uploads, weights):
        out = super().coordinate(sim, rnd, uploads, weights)
        self._spy['noise'].append(({k: weights[k] for k in uploads}, {k: (out[k] - uploads[k]).double() for k in uploads}))
        return out

# --- building blocks -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('C,m,s', [(10, 5, 2), (10, 5, 5), (10, 2, 5), (6, 4, 2), (9, 4, 7), (100, 5, 20), (3, 7, 2),
                                   (10, 2, 2), (100, 2, 20)])
def test_partition_balanced_multiplicities_and_coverage(C, m, s):
    g = np.random.default_rng(C * 100 + m)
    seen = set()
    for _ in range(30):
        subs = class_guided_partition(C, m, s, g, 'strict')
        assert len(subs) == m and all(len(np.unique(x)) == len(x) == s for x in subs)
        mult = np.bincount(np.concatenate(subs), minlength=C)
        assert mult.max() - mult.min() <= 1                              # balanced multiplicities
        assert mult.min() >= 1 if m * s >= C else mult.max() == 1         # every class covered, else disjoint
        seen.add(tuple(tuple(x) for x in subs))
    assert len(seen) > 1                                     # fresh assignments

def _largest_overlap(subs): return max(len(np.intersect1d(a, b)) for a, b in itertools.combinations(subs, 2))

@pytest.mark.parametrize('C,m,s,best', [(10, 5, 5, 2), (10, 5, 4, 1)])
def test_partition_largest_overlap_over_200_seeds(C, m, s, best):
    worst, identical = 0, 0
    for seed in range(200):
        subs = class_guided_partition(C, m, s, np.random.default_rng(seed))
        worst = max(worst, _largest_overlap(subs))
        identical += sum(np.array_equal(a, b) for a, b in itertools.combinations(subs, 2))
        assert np.ptp(np.bincount(np.concatenate(subs), minlength=C)) <= 1
    assert identical == 0 and worst <= best

def test_partition_loose_and_errors():
    subs = class_guided_partition(10, 5, 5, np.random.default_rng(0), 'loose')     # independent draws
    assert [len(x) for x in subs] == [5] * 5
    with pytest.raises(ValueError, match=r'1 <= n_per_member <= 10'): class_guided_partition(10, 2, 11, np.random.default_rng(0))
    with pytest.raises(ValueError, match="coverage must be one of"): class_guided_partition(10, 2, 5, np.random.default_rng(0), 'all')

def test_schedule_linear_decay_reaches_min_ratio_for_every_coalition_size():
    T = 21
    lin = [10 + (4 - 10) * (t - 1) / (T - 1) for t in range(1, T + 1)]
    for m in (1, 2, 3, 5, 20):
        s = [class_schedule(t, T, 20, m, 0.5, 0.2) for t in range(1, T + 1)]
        assert s == [math.floor(x + 0.5) for x in lin] and s[-1] == 4
    for T in (5, 30): assert class_schedule(T, T, 10, 2) == round(0.2 * 10)
    assert class_schedule(30, 30, 10, 2) == round(0.2 * 10) and class_schedule(30, 30, 100, 2) == 20
    for bad in [dict(max_ratio=0.), dict(min_ratio=1.5), dict(max_ratio=0.2, min_ratio=0.3)]:
        with pytest.raises(ValueError): class_schedule(1, T, 20, 3, **bad)

def test_exp3_distribution_with_floor_and_normalised_rewards():
    b, g = EXP3(8, gamma=0.2, eta=0.3), np.random.default_rng(0)
    for t in range(400):
        arm = b.draw(g)
        r = b.update(arm, float(g.normal()) * 100 + (300 if arm == 5 else 0))     # huge raw scale
        assert -1 <= r <= 1
        p = b.probs()
        assert abs(p.sum() - 1) < 1e-12 and p.min() >= 0.2 / 8 - 1e-12
    assert b.probs().argmax() == 5 and len(b.rewards) == 20
    b.rewards = list(np.arange(20.))
    lo, hi = np.percentile(np.arange(20.), [20, 80])
    assert b.normalise(lo) == pytest.approx(-1) and b.normalise(hi) == pytest.approx(1) and b.normalise(1e9) == 1

def test_compensation_loss_hand_computation_and_gradient():
    z = torch.tensor([[0.5, 2.0, -1.0]], requires_grad=True); y = torch.tensor([1])
    p = torch.softmax(z.detach(), 1)[0].tolist()
    q = [(1 - p[1]) / 2, p[1], (1 - p[1]) / 2]
    kl = sum(qi * math.log(qi / pi) for qi, pi in zip(q, p))
    H = -sum(pi * math.log(pi) for pi in p)
    L = compensation_loss(z, y, mu=0.1)
    assert L.item() == pytest.approx(kl - 0.1 * H, abs=1e-6)
    assert kl > 0 and kl != pytest.approx(sum(pi * math.log(pi / qi) for qi, pi in zip(q, p)), abs=1e-4)  # the direction matters
    L.sum().backward()
    assert z.grad[0, 1].item() >= 0                          # no push up of the true-class logit
    z2 = torch.tensor([[0.5, 2.0, -1.0]], requires_grad=True)
    compensation_loss(z2, y, mu=0.).sum().backward()
    assert z2.grad[0, 1].item() == pytest.approx(0, abs=1e-7)   # the KL term leaves the true class alone

@pytest.mark.parametrize('variant,per_member', list(itertools.product(['projected', 'pairwise'], [False, True])))
def test_noise_weighted_sum_is_zero(variant, per_member):
    w = {1: 0.05, 4: 0.15, 6: 0.3, 8: 0.5}
    sig = {1: 0.2, 4: 0.02, 6: 2., 8: 0.5} if per_member else 0.2
    if variant == 'projected': d = neutral_noise(w, 50_000, sig, torch.Generator().manual_seed(3))
    else: d = pairwise_neutral_noise(w, 50_000, sig, {(a, b): a * 31 + b for a in w for b in w if a < b})
    assert sum(w[k] * d[k] for k in w).abs().max() < 1e-13
    assert all(v.std() > 0.005 for v in d.values())

def test_mask_kinds():
    shapes = [(4, 5), (5,), (3, 5)]
    assert perturb_mask(shapes, 0.25).nonzero().flatten().tolist() == list(range(40 - 10, 40))
    assert perturb_mask(shapes, 0.2, 'layer').sum() == 4 + 1 + 3 and perturb_mask(shapes, 0.2, 'all').all()
    r = [perturb_mask(shapes, 0.25, 'random', torch.Generator().manual_seed(i)) for i in (0, 0, 1)]
    assert r[0].sum() == 10 and torch.equal(r[0], r[1]) and not torch.equal(r[0], r[2])

# --- configuration errors, before training ---------------------------------------------------------------------------

def test_bad_input_errors(tiny_fed):
    data, fed = tiny_fed
    cases = [(lambda: CoFedMID([0, 2, 2]), 'duplicate client ids'), (lambda: CoFedMID([3]), 'at least 2 clients'),
             (lambda: CoFedMID([0, 1], min_class_ratio=0.6), 'must not exceed'), (lambda: CoFedMID([0, 1], max_class_ratio=0), 'in (0, 1]'),
             (lambda: CoFedMID([0, 1], sigma=-1), 'sigma must be >= 0'), (lambda: CoFedMID([0, 1], mask='head'), 'mask must be one of'),
             (lambda: CoFedMID([0, 1], modules='m2'), "unknown ablation 'm2'"),
             (lambda: CoFedMID([0, 1], solo='warn'), "solo must be one of 'skip', 'error'"),
             (lambda: CoFedMID([0, 1], noise_scale='rel'), "noise_scale must be one of"),
             (lambda: CoFedMID([0, 1], init_round=-0.5), 'init_round must be a round number')]
    for f, msg in cases:
        with pytest.raises(ValueError, match=None) as e: f()
        assert msg in str(e.value), (msg, str(e.value))
    calls = []
    class Watch:
        def observe(self, *a): calls.append(1)
    for coal, msg in [([0, 1, 7], 'client ids [7] do not exist'), (6, 'coalition=6: a count must be in 0..5'),
                      (list(range(6)), 'client ids [5] do not exist'),
                      ([0, 1], 'init_round=10 is after the last round (rounds=1): Module 2 would never recycle')]:
        kw = {'init_round': 10} if coal == [0, 1] else {}
        with pytest.raises(ValueError) as e: _run(data, fed, [CoFedMID(coal, **kw)], rounds=1, observers=[Watch()])
        assert msg in str(e.value)
    assert not calls                                          # no round was trained
    assert pick_clients('pair', 10, how='first') == [0, 1] and len(pick_clients('half', 10, seed=3, what='coalition')) == 5
    from cofedmid.experiment import ExperimentConfig, ConfigError
    with pytest.raises(ConfigError, match='init_round=12 is after the last round'):
        ExperimentConfig(dataset='synthetic', rounds=4, defense='cofedmid', defense_kwargs={'init_round': 12}).check()
    with pytest.raises(ConfigError, match='the coalition secret must not go into defense_kwargs'):
        ExperimentConfig(dataset='synthetic', defense='cofedmid', defense_kwargs={'secret': 'x'}).check()

@pytest.mark.parametrize('seed', range(4))
def test_one_coalition_draw_for_one_request(seed):
    from cofedmid.experiment import ExperimentConfig
    for spec in (3, 'half', 'pair', 0.3, 7):
        assert CoFedMID(spec, modules='m1').coalition_of(10, seed) == ExperimentConfig(n_clients=10, defended=spec, seed=seed).defended_clients()
    assert pick_clients(3, 10, seed, what='coalition') == pick_clients(3, 10, seed, what='defended')   # the label is a label
    assert set(ABLATIONS) == {'m1', 'm1+m2', 'm3', 'all'} and set(COALITION_PRESETS) == {'pair', 'half'}

# --- the defense in a federation -------------------------------------------------------------------------------------

def test_recycling_respects_cap_and_only_uses_excluded_samples(tiny_fed):
    data, fed = tiny_fed
    spy = _Spy([0, 1, 2], init_round=1, n_intervals=3, recycle_ratio=0.2, modules='m1+m2')
    sim = _run(data, fed, [spy], rounds=5)
    y, total = data.y_train.numpy(), 0
    for rnd, k, msg, rec in spy._spy['sel']:
        local = fed.clients[k]
        assert np.isin(rec, local[~np.isin(y[local], msg.classes[k])]).all()
        assert len(rec) <= math.floor(0.2 * len(local)); total += len(rec)
    assert total > 0
    for r in sim.history:
        cl = [r['clients'][k]['classes'] for k in range(3)]
        assert sorted(set(sum(cl, []))) == list(range(6)) or 3 * len(cl[0]) < 6
        assert all(r['clients'][k]['n_trained'] < len(fed.clients[k]) for k in range(3))
        assert all(abs(sum(r['clients'][k]['arm_probs']) - 1) < 1e-3 for k in range(3) if 'arm_probs' in r['clients'][k])
    for k in range(3): assert spy.exposure_counts(k).sum() == sum(r['clients'][k]['n_trained'] for r in sim.history)

_PLAIN = {}
def _plain_run(data, fed):
    "The undefended run of `test_neutral_in_federation_with_sampling` (made once)."
    if 'sim' not in _PLAIN: _PLAIN['sim'] = _run(data, fed, rounds=6, fraction=0.6, seed=2)
    return _PLAIN['sim']

@pytest.mark.parametrize('variant,scale,mask', [('projected', 'absolute', 'tail'), ('pairwise', 'absolute', 'random'),
                                                ('projected', 'median', 'random'), ('pairwise', 'median', 'tail'),
                                                ('projected', 'member', 'tail'), ('pairwise', 'member', 'random')])
def test_neutral_in_federation_with_sampling(tiny_fed, variant, scale, mask):
    data, fed = tiny_fed
    spy = _Spy([0, 1, 2, 3], noise=variant, modules='m3', noise_scale=scale, mask=mask)
    plain = _plain_run(data, fed)
    sim = _run(data, fed, [spy], rounds=6, fraction=0.6, seed=2)
    sizes, masks = [], set()
    for w, d in spy._spy['noise']:
        sizes.append(len(d))
        if len(d) < 2: assert all(v.abs().max() == 0 for v in d.values()); continue
        big = max(v.abs().max().item() for v in d.values())
        masks.add(tuple(torch.nonzero(next(iter(d.values())) != 0).flatten()[:50].tolist()))
        assert big > 0 and sum(w[k] * d[k] for k in d).abs().max().item() < 1e-6 * big
        if scale == 'absolute': assert big > 0.1 * spy.sigma
    assert (len(masks) > 1) == (mask == 'random')
    assert max(sizes) >= 2
    assert torch.allclose(sim.params, plain.params, atol=1e-4)       # M3 leaves the global model unchanged
    ups = {k: torch.randn(sim.params.numel()) for k in (0, 2, 3)}    # dropout of member 1 after planning
    w = fedavg_weights({k: len(fed.clients[k]) for k in range(5)})
    out = spy.coordinate(sim, 2, ups, {k: w[k] for k in ups})
    assert sum(w[k] * (out[k] - ups[k]).double() for k in ups).abs().max() < 1e-6

def test_resume_with_defense_state(tiny_fed, tmp_path):
    data, fed = tiny_fed
    class Crash:
        def observe(self, sim, rnd, *a):
            if rnd == 3: raise KeyboardInterrupt
        def state_dict(self): return {}
        def load_state_dict(self, s): pass
    mk = lambda: CoFedMID([0, 1, 3], init_round=2, n_intervals=3, recycle_ratio=0.2, secret=b'resume test')
    full_d = mk(); full = _run(data, fed, [full_d], rounds=5, fraction=0.8, seed=4)
    with pytest.raises(KeyboardInterrupt): _run(data, fed, [mk()], rounds=5, fraction=0.8, seed=4, observers=[Crash()], out_dir=tmp_path)
    d = mk(); res = _run(data, fed, [d], rounds=5, fraction=0.8, seed=4, out_dir=tmp_path, resume=True)
    assert torch.equal(res.params, full.params)
    for k in (0, 1, 3):
        assert np.array_equal(d.exposure_counts(k), full_d.exposure_counts(k))
        assert np.allclose(d.bandits[k].probs(), full_d.bandits[k].probs())
    assert d.messages == full_d.messages


def test_bandit_never_updated_in_a_round_that_recycled_nothing(tiny_fed):
    "A spy on every member's EXP3.update: called exactly for the member-rounds that recycled something, on a drawable arm."
    data, fed = tiny_fed
    for ratio, intervals in ((0.2, 'width'), (0.2, 'quantile'), (0.01, 'width')):       # 0.01 x 36..64: a cap of 0
        d, calls = CoFedMID([0, 1, 2], modules='m1+m2', init_round=0.4, n_intervals=6, recycle_ratio=ratio, intervals=intervals), []
        setup = d._setup
        def spied(sim, setup=setup, d=d, calls=calls):
            setup(sim)
            for k, b in d.bandits.items():
                def upd(arm, r, allowed=None, _k=k, _u=b.update): calls.append((sim.round + 1, _k, arm)); return _u(arm, r, allowed)
                b.update = upd
        d._setup = spied
        sim = _run(data, fed, [d], rounds=5)
        done = [(r['round'], k, r['clients'][k]['arm']) for r in sim.history for k in range(3) if r['clients'][k]['n_recycled']]
        assert calls == done and (len(calls) > 0) == (ratio > 0.1)
        for r in sim.history:
            for k in range(3):
                c = r['clients'][k]
                assert r['round'] >= 2 or c['n_recycled'] == 0                    # recycling from round ceil(0.4 x 5) = 2
                if 'arm' in c: assert c['arm'] in c['nonempty_intervals']

def test_solo_rounds_warn_or_stop_and_are_logged(tiny_fed):
    data, fed = tiny_fed
    with pytest.warns(UserWarning, match='only coalition member uploading'):
        d = CoFedMID([0, 1], modules='m3'); sim = _run(data, fed, [d], rounds=6, fraction=0.4, seed=2)
    solo = [r['round'] for r in sim.history if sum(k < 2 for k in r['participants']) == 1]
    assert solo and d.skipped == solo
    for r in sim.history:
        if r['round'] in solo: assert [c['noise'] for k, c in r['clients'].items() if k < 2] == ['skipped: single member']
    e = CoFedMID([0, 1], modules='m3', solo='error')
    with pytest.raises(RuntimeError, match=rf"CoFedMID round {solo[0]}: member \d+ is the only .*\(solo='error'\)"):
        _run(data, fed, [e], rounds=6, fraction=0.4, seed=2)
    assert e.skipped == solo[:1]

def _noise_run(data, fed, out_dir=None, **kw):
    spy = _Spy([0, 1, 2, 3], modules='m3', **kw)
    sim = _run(data, fed, [spy], rounds=3, out_dir=out_dir)
    return sim, spy, [d for _, d in spy._spy['noise']]

@pytest.mark.parametrize('variant', ['projected', 'pairwise'])
def test_given_secret_reproduces_a_run_byte_for_byte(tiny_fed, variant, monkeypatch):
    data, fed = tiny_fed
    monkeypatch.delenv(SECRET_ENV, raising=False)
    a, _, na = _noise_run(data, fed, noise=variant, secret='coalition of four')
    b, _, nb_ = _noise_run(data, fed, noise=variant, secret='coalition of four')
    c, dc, nc = _noise_run(data, fed, noise=variant)                                  # no secret: a fresh random one
    assert a.params.numpy().tobytes() == b.params.numpy().tobytes()
    assert all(torch.equal(x[k], y[k]) for x, y in zip(na, nb_) for k in x)
    assert all(not torch.equal(x[k], y[k]) for x, y in zip(na, nc) for k in x) and dc.secret_source == 'random'
    assert torch.allclose(a.params, c.params, atol=1e-4)                               # the noise still cancels
    monkeypatch.setenv(SECRET_ENV, 'coalition of four')                                # the member-side environment
    _, de, ne = _noise_run(data, fed, noise=variant)
    assert de.secret_source == 'env' and all(torch.equal(x[k], y[k]) for x, y in zip(na, ne) for k in x)

@pytest.mark.parametrize('variant', ['projected', 'pairwise'])
def test_server_side_objects_do_not_regenerate_the_noise(tmp_path, variant, monkeypatch):
    "Config, results, checkpoint and what a Flower member sends: rebuilt into a coalition, they give other noise."
    from cofedmid.experiment import preset, run_experiment
    from cofedmid.flower import layout, client_side, client_round, pack_log
    from cofedmid.fl import fedavg_weights
    secret = 'known to the members only'
    monkeypatch.setenv(SECRET_ENV, secret)
    cfg, _ = preset('smoke', defense='cofedmid', defended=[0, 1, 2], defense_kwargs={'modules': 'm3', 'noise': variant})
    run_experiment(cfg, tmp_path/'run', verbose=False, keep_checkpoint=True)
    key = cfg.build_defenses()[0]._key
    for f in (tmp_path/'run').iterdir():                                               # nothing the server holds has it
        if f.is_dir(): continue                                                         # members/: the members' side
        b = f.read_bytes()
        assert secret.encode() not in b and key not in b, f.name
    ck = load_state(tmp_path/'run'/'checkpoint.pt')
    server_cfg = json.loads((tmp_path/'run'/'config.json').read_text())
    # what the members compute (the secret in their environment) versus the server's best reconstruction
    def rebuilt():
        from cofedmid.experiment import ExperimentConfig
        d = ExperimentConfig.from_dict(server_cfg).build_defenses()[0]
        d.load_state_dict(ck['defenses'][0])
        return d
    member = rebuilt()
    data, fed = layout(cfg)
    sizes = {k: len(fed.clients[k]) for k in range(cfg.n_clients)}
    w = fedavg_weights(sizes)
    ww = {k: w[k] for k in (0, 1, 2)}
    from cofedmid.models import get_model
    n = int(member.round_mask(get_model(cfg.model, 4, 3), 2).sum())
    truth = {k: member.noise_share(2, k, ww, n, member.sigma) for k in ww}
    monkeypatch.delenv(SECRET_ENV)
    for guess_secret in (None, str(cfg.seed), json.dumps(server_cfg)):                 # fresh, the run seed, the whole config
        if guess_secret is not None: monkeypatch.setenv(SECRET_ENV, guess_secret)
        srv = rebuilt()
        guess = {k: srv.noise_share(2, k, ww, n, srv.sigma) for k in ww}
        assert all(not torch.allclose(guess[k], truth[k]) for k in ww)
        assert all(float((guess[k] - truth[k]).norm()) > float(truth[k].norm()) for k in ww)   # not even close
    # the Flower path: a member's reply (upload and log) and its node state do not carry the secret either
    monkeypatch.setenv(SECRET_ENV, secret)
    sim, init = client_side(json.dumps(cfg.to_dict()))
    up, log, state = client_round(sim, 0, 1, sim.params.clone(), sizes, None, init)
    for blob in (pack_log(log).encode(), pickle.dumps(state), up.numpy().tobytes()):
        assert secret.encode() not in blob and key not in blob
    assert not any('seed' in k for k in log)

# --- real CIFAR-10 ---------------------------------------------------------------------------------------------------

def _loss_series_aucs(traj, members, coalition) -> dict:
    "Mean over `members` of Loss-Series AUCs (upload and global view) against OFL and IFL split by owner."
    from sklearn.metrics import roc_auc_score
    K, own, res = traj.n_clients, traj.cand_owner, {}
    for k in members:
        scores = {'upload': -np.nanmean(traj.loss[:, k, :], 0), 'global': -np.nanmean(traj.loss[:, K, :], 0)}
        non = {'ofl': own == -1, 'ifl_coalition': np.isin(own, coalition) & (own != k),
               'ifl_outside': (own >= 0) & ~np.isin(own, coalition)}
        for v, sc in scores.items():
            for n, nm in non.items():   # global view vs other members: 0.5 on average by symmetry, so left out
                if not nm.any() or (v, n) == ('global', 'ifl_coalition'): continue
                use = nm | (own == k)
                res.setdefault(f'{v}_{n}', []).append(roc_auc_score(own[use] == k, sc[use]))
    return {n: float(np.mean(a)) for n, a in res.items()}

def _cifar_loss_series_study(data_dir: str, rounds: int = 20, coalition=(0, 1, 2, 3, 4), record_every: int = 2,
                             seed: int = 0, **defense_kw) -> dict:
    "Test accuracy and Loss-Series AUCs on the coalition members of CIFAR-10, without a defense and with CoFedMID."
    from cofedmid.data import load_dataset
    from cofedmid.partition import Federation
    from cofedmid.fl import FedAvg, FLConfig
    from cofedmid.trajectory import TrajectoryRecorder
    data = load_dataset('cifar10', data_dir, progress=False)
    fed = Federation.split(data.y_train.numpy(), n_clients=10, size=500, n_ofl=1000, n_val=500, seed=seed)
    pool = CandidatePool.make(fed, n_per_client=250, n_ofl=1000, seed=seed)
    out = {}
    for name in ('none', 'cofedmid'):
        defs = [CoFedMID(list(coalition), pool=pool, **defense_kw)] if name == 'cofedmid' else []
        rec = TrajectoryRecorder(pool, record_every=record_every, grad_signals=False)
        cfg = FLConfig(rounds=rounds, local_epochs=2, batch_size=64, lr=0.05, eval_size=2000, seed=seed, progress=False)
        sim = FedAvg(data, fed, 'cnn', cfg, defenses=defs, observers=[rec])
        sim.run()
        out[name] = {'test_acc': sim.history[-1]['test_acc'], **_loss_series_aucs(rec.traj, list(coalition), list(coalition))}
        if defs: out[name]['mean_exposure'] = float(np.mean([defs[0].exposure_counts(k).mean() for k in coalition]))
    return out


@pytest.mark.slow
def test_cifar10_half_coalition(data_dir):
    res = _cifar_loss_series_study(str(data_dir), rounds=20)
    print(res)
    nd, cf = res['none'], res['cofedmid']
    # measured (seed 0): acc 0.572 -> 0.497, upload vs OFL 0.720 -> 0.536, global vs OFL 0.589 -> 0.518
    assert cf['test_acc'] >= nd['test_acc'] - 0.1                                    # utility band
    assert cf['upload_ofl'] < nd['upload_ofl'] - 0.08 and abs(cf['upload_ofl'] - 0.5) < abs(nd['upload_ofl'] - 0.5)
    assert cf['global_ofl'] < nd['global_ofl']
    assert 'global_ifl_coalition' not in cf                                           # 0.5 by symmetry: not reported
