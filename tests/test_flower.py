"The Flower engine: clear error without the extra, member-side noise, and (slow) Flower == in-process for one seed."
import json, subprocess, sys
import numpy as np
import pytest
import torch
from cofedmid.experiment import ExperimentConfig
from cofedmid.fl import FedAvg, fedavg_weights
from cofedmid.partition import CandidatePool
from cofedmid.trajectory import TrajectoryRecorder
from cofedmid.cofedmid import pairwise_neutral_noise, pairwise_share, SECRET_ENV
from cofedmid.flower import INSTALL_HINT, _require_flwr, layout, client_side, client_round, FlowerEngine

@pytest.fixture(autouse=True)
def coalition_secret(monkeypatch):
    "The members' common secret, in their environment (the in-process reference reads the same variable)."
    monkeypatch.setenv(SECRET_ENV, 'flower test coalition')

def _cfg(noise='projected', **kw):
    "3 clients x 2 rounds, a 2-member CoFedMID coalition with all modules (compensation from round 1)."
    return ExperimentConfig(dataset='synthetic', synthetic=dict(n_classes=4, n_train=320, n_test=64, size=8, signal=0.5),
                            n_clients=3, per_client=64, n_ofl=32, n_val=32, members_per_client=16, rounds=2, local_epochs=1,
                            batch_size=16, record_every=1, eval_size=None, defense='cofedmid', defended=[0, 1],
                            defense_kwargs={'init_round': 1, 'noise': noise}, seed=3, **kw)

def test_core_does_not_import_flwr():
    code = "import sys, cofedmid.all, cofedmid.cli, cofedmid.flower; assert 'flwr' not in sys.modules, 'flwr imported'"
    subprocess.run([sys.executable, '-c', code], check=True)

def test_missing_extra_message(monkeypatch):
    for k in [k for k in sys.modules if k == 'flwr' or k.startswith('flwr.')]: monkeypatch.delitem(sys.modules, k)
    monkeypatch.setitem(sys.modules, 'flwr', None)
    for f in (_require_flwr, FlowerEngine):
        with pytest.raises(ImportError) as e: f()
        assert str(e.value) == INSTALL_HINT == "the Flower engine needs the extra: pip install 'cofedmid[flower]'"

def test_cli_engine_flower_without_the_extra(monkeypatch, tmp_path, capsys):
    "`cofedmid run --engine flower` without flwr: one line on stderr, exit status 2, nothing written."
    from cofedmid.cli import cli
    for k in [k for k in sys.modules if k == 'flwr' or k.startswith('flwr.')]: monkeypatch.delitem(sys.modules, k)
    monkeypatch.setitem(sys.modules, 'flwr', None)
    with pytest.raises(SystemExit) as e: cli(['run', '--preset', 'smoke', '--engine', 'flower', '--out', str(tmp_path/'r')])
    assert e.value.code == 2 and "pip install 'cofedmid[flower]'" in capsys.readouterr().err
    assert not (tmp_path/'r').exists()

def test_pairwise_share_is_the_members_row():
    w, seeds = {1: .25, 2: .35, 4: .4}, {(1, 2): 5, (1, 4): 6, (2, 4): 7}
    full = pairwise_neutral_noise(w, 64, 0.3, seeds)
    for k in w:
        own = pairwise_share(w, 64, 0.3, k, {j: seeds[min(j, k), max(j, k)] for j in w if j != k})
        assert torch.equal(own, full[k])

def _replay(cfg):
    "Run each client on its own with `client_round` (its state carried between rounds, as a Flower node does) == in-process."
    data, fed = layout(cfg)
    ref = FedAvg(data, fed, cfg.model, cfg.fl_config(), cfg.build_defenses())
    ref.run()
    sim, init = client_side(json.dumps(cfg.to_dict()))
    params, states = FedAvg(data, fed, cfg.model, cfg.fl_config()).params, {}
    for rnd in range(1, cfg.rounds + 1):
        sizes = {k: len(fed.clients[k]) for k in ref.participants(rnd)}
        w, new = fedavg_weights(sizes), params.clone()
        for k in sizes:
            u, log, states[k] = client_round(sim, k, rnd, params, sizes, states.get(k), init)
            new.add_(u, alpha=w[k])
            assert log == ref.history[rnd - 1]['clients'][k]
        params = new
    assert torch.equal(params, ref.params)                     # bit for bit

@pytest.mark.parametrize('noise', ['projected', 'pairwise'])
def test_client_rounds_replay_inprocess(noise): _replay(_cfg(noise))

def test_client_rounds_replay_with_client_sampling():
    "2 of 3 clients a round: some rounds have a single coalition member, whose noise is skipped as in-process."
    cfg = ExperimentConfig.from_dict(_cfg().to_dict() | dict(client_fraction=0.67, rounds=4))
    _replay(cfg)

@pytest.mark.parametrize('defense,knob', [('dpsgd', 1.0), ('perturb', 10.)])
def test_baseline_client_rounds_replay(defense, knob):
    "Baseline defenses (DP-SGD keeps an accountant per client) replay exactly too."
    _replay(ExperimentConfig.from_dict(_cfg().to_dict() | dict(defense=defense, knob=knob, defense_kwargs={})))

def test_member_side_refusals_before_training(monkeypatch):
    "A member node without the coalition secret, or a relative noise scale, is refused when the node is set up."
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(ValueError, match=f"set {SECRET_ENV} on every member's node"): client_side(json.dumps(_cfg().to_dict()))
    monkeypatch.setenv(SECRET_ENV, 'x')
    cfg = ExperimentConfig.from_dict(_cfg().to_dict() | dict(defense_kwargs={'init_round': 1, 'noise_scale': 'median'}))
    with pytest.raises(ValueError, match="noise_scale='median' needs the coalition's masked update norms"):
        client_side(json.dumps(cfg.to_dict()))

def test_flower_sim_needs_a_grid_and_cannot_resume_a_defended_run():
    pytest.importorskip('flwr')
    cfg = _cfg()
    data, fed = layout(cfg)
    eng = FlowerEngine()
    sim = eng.make_sim(cfg, data, fed)
    with pytest.raises(RuntimeError, match='inside a Flower ServerApp'): sim.run_round()
    sim.round = 1
    with pytest.raises(RuntimeError, match='cannot resume a Flower run with a defense'): eng.run(sim)

def _run(cfg, engine=None):
    "Global model, trajectory, history and each round's uploads (and, in-process, the members' uploads before the noise)."
    data, fed = layout(cfg)
    pool = CandidatePool.make(fed, cfg.members_per_client, seed=cfg.seed)
    rec = TrajectoryRecorder(pool, cfg.record_every, cfg.grad_signals)
    seen, clean = {}, {}
    class Uploads:
        def observe(self, sim, rnd, before, uploads, weights, after):
            seen[rnd] = ({k: u.clone() for k, u in uploads.items()}, dict(weights))
    if engine is not None:
        sim = engine.make_sim(cfg, data, fed, [rec, Uploads()])
        engine.run(sim)
    else:
        sim = FedAvg(data, fed, cfg.model, cfg.fl_config(), cfg.build_defenses(), [rec, Uploads()])
        d, coordinate = sim.defenses[0], sim.defenses[0].coordinate
        def spy(s, rnd, uploads, weights):
            clean[rnd] = {k: u.clone() for k, u in uploads.items()}
            return coordinate(s, rnd, uploads, weights)
        d.coordinate = spy
        sim.run()
    return sim, rec.traj, seen, clean

@pytest.mark.slow
@pytest.mark.parametrize('noise', ['projected', 'pairwise'])
def test_flower_matches_inprocess(noise):
    "3 clients x 2 rounds with a 2-member coalition on Flower's simulation engine (offline, Ray with 1 CPU) == in-process."
    pytest.importorskip('flwr')
    torch.set_num_threads(1)
    cfg = _cfg(noise)
    fl, fl_traj, fl_up, _ = _run(cfg, FlowerEngine(num_cpus=1))
    ip, ip_traj, ip_up, clean = _run(cfg)
    torch.testing.assert_close(fl.params, ip.params, rtol=0, atol=1e-5)                    # the aggregated global model
    for f in ('loss', 'conf', 'margin', 'gdot', 'gnorm', 'dnorm', 'participated'):          # the recorded signals
        np.testing.assert_allclose(getattr(fl_traj, f), getattr(ip_traj, f), rtol=1e-4, atol=1e-5)
    assert [h['clients'] for h in fl.history] == [h['clients'] for h in ip.history]
    assert [h['test_acc'] for h in fl.history] == pytest.approx([h['test_acc'] for h in ip.history])
    for rnd in (1, 2):
        ups, w = fl_up[rnd]
        for k in ups: torch.testing.assert_close(ups[k], ip_up[rnd][0][k], rtol=0, atol=1e-5)   # the server's view
        delta = {k: ups[k].double() - clean[rnd][k].double() for k in clean[rnd]}               # each member's noise
        assert sorted(delta) == [0, 1] and all(float(d.norm()) > 1e-3 for d in delta.values())
        resid = sum(w[k] * delta[k] for k in delta)                                              # sum_k w_k delta_k
        assert float(resid.abs().max()) < 1e-6 * max(float(d.abs().max()) for d in delta.values()) + 1e-6

def test_a_node_holds_and_builds_only_its_own_partition(tmp_path, monkeypatch):
    "A node's file has its rows (and a member's validation share) only; its simulator is built without the layout."
    import cofedmid.flower as cf
    from cofedmid.flower import export_partitions, load_partition
    cfg = _cfg('pairwise')
    data, fed = layout(cfg)
    export_partitions(cfg, tmp_path)
    def no_layout(*a, **k): raise AssertionError('a node with a partition file built the whole layout')
    monkeypatch.setattr(cf, 'build_layout', no_layout)
    others = lambda k: set(np.concatenate([c for j, c in enumerate(fed.clients) if j != k]).tolist())
    for k in range(3):
        with np.load(tmp_path/f'client-{k}.npz', allow_pickle=False) as z:
            rows = set(z['rows'].tolist())
        assert set(fed.clients[k].tolist()) <= rows and not rows & others(k) and not rows & set(fed.ofl.tolist())
        assert (rows - set(fed.clients[k].tolist()) <= set(fed.val.tolist())) and ((k == 2) <= (rows == set(fed.clients[k].tolist())))
        sim, _ = client_side(json.dumps(cfg.to_dict()), tmp_path/f'client-{k}.npz')
        held = set(np.flatnonzero(sim.y.cpu().numpy() >= 0).tolist())
        assert held == rows and sim.node_client == k and int(sim.x[list(others(k))].sum()) == 0

def test_the_server_side_holds_no_noise_seed(tmp_path):
    "The server's simulator has no defense object (no secret, no seed): only the members' public keys, once relayed."
    pytest.importorskip('flwr')
    from cofedmid.flower import export_partitions
    cfg = _cfg('pairwise')
    export_partitions(cfg, tmp_path)
    eng = FlowerEngine(auditor=tmp_path/'auditor.npz')
    sim = eng.make_sim(cfg, *eng.layout(cfg))
    assert sim.defenses == [] and sim.public_keys == {}
    assert not any('secret' in k or 'seed' in k and k != 'seed' for k in vars(sim))
    member = client_side(json.dumps(cfg.to_dict()), tmp_path/'client-0.npz')[0]
    assert member.defenses[0].public_key_of(member, 0) is not None and member.defenses[0].public_key_of(member, 2) is None

def test_members_with_secrets_of_their_own_agree_through_relayed_keys(tmp_path, monkeypatch):
    "Pairwise noise with a different secret on each member's node: the relayed public keys make it cancel in the aggregate."
    from cofedmid.flower import export_partitions
    cfg = _cfg('pairwise')
    data, fed = layout(cfg)
    export_partitions(cfg, tmp_path)
    ref = FedAvg(data, fed, cfg.model, cfg.fl_config(), cfg.build_defenses())
    ref.run()
    sides = {}
    for k in range(3):                                      # each node reads its own secret when it builds its side
        monkeypatch.setenv(SECRET_ENV, f'secret of node {k} only')
        sides[k] = client_side(json.dumps(cfg.to_dict()), tmp_path/f'client-{k}.npz')
    keys = {k: pk for k, (s, _) in sides.items() if (pk := s.defenses[0].public_key_of(s, k)) is not None}
    assert sorted(keys) == [0, 1]
    params, states, noise = FedAvg(data, fed, cfg.model, cfg.fl_config()).params, {}, []
    for rnd in range(1, cfg.rounds + 1):
        sizes = {k: len(fed.clients[k]) for k in range(3)}
        new = params.clone()
        for k, w in fedavg_weights(sizes).items():
            u, log, states[k] = client_round(sides[k][0], k, rnd, params, sizes, states.get(k), sides[k][1], keys)
            new.add_(u, alpha=w); noise.append(log.get('noise_norm', 0.))
        params = new
    assert max(noise) > 1                                   # the members' noise is large against the updates ...
    torch.testing.assert_close(params, ref.params, rtol=0, atol=1e-4)   # ... and cancels: the in-process global model
