"The experiment runner: artefacts, resume after a crash, refusal to overwrite, atomic results, sweeps skipping done cells."
import json
import numpy as np
import pandas as pd
import pytest
import torch
from cofedmid.experiment import ExperimentConfig, ConfigError, preset, run_experiment, sweep, summary, report, load_results
from cofedmid.trajectory import Trajectory
from cofedmid.fl import FedAvg

def _smoke(**kw):
    base, _ = preset('smoke', **kw)
    return base

@pytest.fixture(autouse=True)
def coalition_secret(monkeypatch):
    "CoFedMID's coalition secret in the members' environment: reruns and resumes are then byte-identical."
    from cofedmid.cofedmid import SECRET_ENV
    monkeypatch.setenv(SECRET_ENV, 'experiment tests')

FILES = {'config.json', 'layout.npz', 'trajectory.npz', 'history.json', 'results.csv', 'scores.npz', 'log.txt'}

def test_artefacts(tmp_path):
    res = run_experiment(_smoke(defense='none'), tmp_path/'a', verbose=False)
    assert FILES <= {p.name for p in (tmp_path/'a').iterdir()}
    assert not (tmp_path/'a'/'checkpoint.pt').exists()                 # a finished run needs no checkpoint (2/3 of its bytes)
    run_experiment(_smoke(defense='none', rounds=1), tmp_path/'k', verbose=False, keep_checkpoint=True)
    assert (tmp_path/'k'/'checkpoint.pt').is_file()
    cols = ['target', 'target_defended', 'attack', 'view', 'nonmembers', 'auc', 'auc_ci_low', 'auc_ci_high',
            'tpr_at_1pct_fpr', 'tpr_at_0_1pct_fpr', 'n_members', 'n_nonmembers', 'note', 'dataset', 'model', 'defense',
            'coalition_size', 'seed', 'test_acc']
    assert set(cols) <= set(res.columns)
    assert {'upload', 'global'} <= set(res.view) and {'ofl', 'ifl', 'all', 'ifl_coalition', 'ifl_undefended'} <= set(res.nonmembers)
    assert res.auc.between(0, 1).all() and (res.coalition_size == 0).all()
    assert json.loads((tmp_path/'a'/'config.json').read_text())['defense'] == 'none'
    assert len(json.loads((tmp_path/'a'/'history.json').read_text())) == 4
    pd.testing.assert_frame_equal(res, pd.read_csv(tmp_path/'a'/'results.csv'), check_dtype=False)

def test_never_overwrites_and_resume_checks_config(tmp_path):
    cfg = _smoke(defense='none', rounds=2)
    run_experiment(cfg, tmp_path, verbose=False)
    with pytest.raises(FileExistsError, match='exists and is not empty'): run_experiment(cfg, tmp_path, verbose=False)
    with pytest.raises(ConfigError, match=r"its config differs in \['rounds'\]"):
        run_experiment(_smoke(defense='none', rounds=3), tmp_path, resume=True, verbose=False)
    before = (tmp_path/'results.csv').read_bytes()
    run_experiment(cfg, tmp_path, resume=True, verbose=False)     # finished: returns the stored results
    assert (tmp_path/'results.csv').read_bytes() == before

@pytest.mark.parametrize('defense', ['none', 'cofedmid'])
def test_resume_after_crash_gives_the_same_result(tmp_path, monkeypatch, defense):
    cfg = _smoke(defense=defense)
    full = run_experiment(cfg, tmp_path/'full', verbose=False)
    real = FedAvg.run_round
    def crash(self):
        if self.round == 2: raise KeyboardInterrupt('killed')
        return real(self)
    monkeypatch.setattr(FedAvg, 'run_round', crash)
    with pytest.raises(KeyboardInterrupt): run_experiment(cfg, tmp_path/'cut', verbose=False)
    assert not (tmp_path/'cut'/'results.csv').exists()          # no partial results after a crash
    assert not list((tmp_path/'cut').glob('.*.tmp'))            # and no temporary files left behind
    monkeypatch.setattr(FedAvg, 'run_round', real)
    again = run_experiment(cfg, tmp_path/'cut', resume=True, verbose=False)
    pd.testing.assert_frame_equal(full, again)
    a, b = Trajectory.load(tmp_path/'full'/'trajectory.npz'), Trajectory.load(tmp_path/'cut'/'trajectory.npz')
    for f in ('loss', 'margin', 'gdot', 'gnorm'): np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert 'resumed' in (tmp_path/'cut'/'log.txt').read_text()

def test_sweep_skips_finished_cells(tmp_path, capsys):
    base = _smoke(rounds=2)
    res = sweep(base, {'defense': ['none', 'cofedmid'], 'seed': [0, 1]}, tmp_path)
    assert res.cell.nunique() == 4 and len(pd.read_csv(tmp_path/'results.csv')) == len(res)
    capsys.readouterr()
    again = sweep(base, {'defense': ['none', 'cofedmid'], 'seed': [0, 1]}, tmp_path)
    assert capsys.readouterr().out.count('(done)') == 4
    pd.testing.assert_frame_equal(res, again)
    t = summary(res)                                # seeds pool into one setting: 2 settings x (mean, low, high)
    assert 'test accuracy' in t.index and t.shape[1] == 6

def test_defense_errors_before_training(tmp_path):
    with pytest.raises(ConfigError, match="defense 'cofedmid'"):
        run_experiment(_smoke(defense='cofedmid', defended=[0], defense_kwargs={'modules': ['perturbation']}), tmp_path, verbose=False)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())

def test_parallel_sweep_equals_serial_and_shares_the_folder(tmp_path):
    "Cells in worker processes give the serial results; a second sweep into the folder reuses cells and keeps rows."
    base, grid = _smoke(rounds=2), {'defense': ['none', 'cofedmid']}
    serial = sweep(base, grid, tmp_path/'serial', verbose=False, threads=1)
    par = sweep(base, grid, tmp_path/'par', verbose=False, jobs=2)
    cols = ['cell', 'attack', 'view', 'nonmembers', 'auc', 'test_acc']
    pd.testing.assert_frame_equal(serial[cols], par[cols], atol=1e-6, check_exact=False)
    more = sweep(base, [{'defense': 'none'}, {'defense': 'cofedmid', 'seed': 1}], tmp_path/'par', verbose=False, jobs=2)
    assert set(more.cell) == {'defense=none', 'defense=cofedmid,seed=1'}
    table = pd.read_csv(tmp_path/'par'/'results.csv')
    assert set(table.cell) == {'defense=none', 'defense=cofedmid', 'defense=cofedmid,seed=1'}
    pd.testing.assert_frame_equal(more[more.cell == 'defense=none'].reset_index(drop=True)[cols],
                                  par[par.cell == 'defense=none'].reset_index(drop=True)[cols])   # read, not rerun

def test_coalition_sizes_are_nested_around_one_target():
    base, grid = preset('coalition')
    from cofedmid.experiment import grid_cells
    cfgs = [ExperimentConfig.from_dict(base.to_dict() | c) for c in grid_cells(grid)]
    targets = {c.target_client() for c in cfgs}
    assert len(targets) == 1
    members = sorted((c.defended_clients() for c in cfgs if c.defense == 'cofedmid'), key=len)
    assert all(set(a) < set(b) for a, b in zip(members, members[1:])) and targets <= set(members[0])

def test_a_failing_cell_does_not_stop_the_sweep(tmp_path, monkeypatch):
    import cofedmid.experiment as ex
    real = ex._run_cell
    def flaky(cfg, out, threads, verbose, engine):
        if cfg.seed == 1: raise FloatingPointError('diverged')
        return real(cfg, out, threads, verbose, engine)
    monkeypatch.setattr(ex, '_run_cell', flaky)
    with pytest.raises(ex.SweepError, match=r"1 of 3 cells failed .* seed=1: FloatingPointError: diverged"):
        sweep(_smoke(rounds=1), {'seed': [0, 1, 2]}, tmp_path, verbose=False)
    assert set(pd.read_csv(tmp_path/'results.csv').cell) == {'seed=0', 'seed=2'}

def test_every_client_is_a_target(tmp_path):
    "One training, every client scored in turn; defended targets flagged; TPR@0.1% NaN with a note at 32-96 non-members."
    cfg = _smoke(defense='cofedmid', rounds=2)
    res = run_experiment(cfg, tmp_path, verbose=False)
    assert sorted(res.target.unique()) == list(range(cfg.n_clients))
    assert sorted(res[res.target_defended].target.unique()) == cfg.defended_clients()
    assert res.groupby('target').size().nunique() == 1                     # the same rows for every target
    assert res.tpr_at_0_1pct_fpr.isna().all() and res.note.str.contains('allow').all()
    assert ((res.auc_ci_low <= res.auc) & (res.auc <= res.auc_ci_high)).all()
    one = run_experiment(_smoke(defense='cofedmid', rounds=2, targets=[1]), tmp_path/'one', verbose=False)
    cols = ['attack', 'view', 'nonmembers', 'auc']
    pd.testing.assert_frame_equal(one[cols], res[res.target == 1].reset_index(drop=True)[cols])

def test_report_and_rerun_are_byte_identical(tmp_path):
    "`report` rebuilds results.csv from scores.npz; the recorded command reruns the run byte for byte at another thread count."
    from cofedmid.cli import cli
    _smoke(defense='cofedmid', rounds=2, threads=1).save(tmp_path/'cfg.json')
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cli(['run', '--config', str(tmp_path/'cfg.json'), '--out', str(tmp_path/'a'), '--quiet'])
        first = (tmp_path/'a'/'results.csv').read_bytes()
        assert json.loads((tmp_path/'a'/'config.json').read_text())['threads'] == 1
        assert torch.get_num_threads() == 2                                 # the run restored the caller's count
        cli(['report', str(tmp_path/'a')])
        assert (tmp_path/'a'/'results.csv').read_bytes() == first
        s = pd.read_csv(tmp_path/'a'/'summary.csv')
        assert {'setting', 'attack', 'view', 'nonmembers', 'target_defended', 'auc_mean', 'auc_ci_low', 'auc_ci_high',
                'n_runs', 'test_acc_mean'} <= set(s.columns)
        log = (tmp_path/'a'/'log.txt').read_text()
        cmd = next(l for l in log.splitlines() if l.startswith('rerun: ')).split()[1:]
        torch.set_num_threads(1 if old > 1 else 2)
        assert cmd[:3] == ['cofedmid', 'run', '--config']
        cli(cmd[1:-1] + [str(tmp_path/'b'), '--quiet'])                    # the recorded command, a new folder
        assert (tmp_path/'b'/'results.csv').read_bytes() == first
    finally: torch.set_num_threads(old)

def test_threads_recorded_and_applied_on_resume(tmp_path, monkeypatch):
    "A run records the thread count it ran with and a resume under another count runs with the recorded one."
    cfg = _smoke(defense='none', rounds=3)
    old = torch.get_num_threads()
    real, seen = FedAvg.run_round, []
    def crash(self):
        seen.append(torch.get_num_threads())
        if self.round == 1 and len(seen) == 2: raise KeyboardInterrupt('killed')
        return real(self)
    monkeypatch.setattr(FedAvg, 'run_round', crash)
    try:
        torch.set_num_threads(1)
        with pytest.raises(KeyboardInterrupt): run_experiment(cfg, tmp_path, verbose=False)
        torch.set_num_threads(2)
        run_experiment(cfg, tmp_path, resume=True, verbose=False)
    finally: torch.set_num_threads(old)
    assert set(seen) == {1} and json.loads((tmp_path/'config.json').read_text())['threads'] == 1
    with pytest.raises(ConfigError, match=r"differs in \['threads'\]"):
        run_experiment(_smoke(defense='none', rounds=3, threads=2), tmp_path, resume=True, verbose=False)

def test_sweep_report_and_load_results(tmp_path):
    "A sweep's table is rebuilt by `report` byte for byte; seeds pool into one setting with an interval over seeds."
    sweep(_smoke(rounds=1), {'defense': ['none', 'cofedmid'], 'seed': [0, 1]}, tmp_path, verbose=False)
    table = (tmp_path/'results.csv').read_bytes()
    s = report(tmp_path)
    assert (tmp_path/'results.csv').read_bytes() == table
    assert set(s.setting) == {'defense=none', 'defense=cofedmid'} and (s.n_runs == 2).all() and (s.ci_over == 'seeds').all()
    assert set(s[s.setting == 'defense=cofedmid'].target_defended) == {True, False}
    assert len(load_results(tmp_path)) == len(pd.read_csv(tmp_path/'results.csv'))
    (tmp_path/'results.csv').unlink()
    assert set(load_results(tmp_path).cell) == {'defense=none,seed=0', 'defense=none,seed=1', 'defense=cofedmid,seed=0', 'defense=cofedmid,seed=1'}
    with pytest.raises(ConfigError, match='neither a run'): report(tmp_path/'cells')


def test_your_own_data_and_model(tmp_path):
    "torchvision FakeData through `from_torch` and a user-defined nn.Module run the whole pipeline, CoFedMID included."
    import torch.nn as nn, torchvision
    from torchvision import transforms
    from cofedmid.data import from_torch
    from cofedmid.models import register_model
    from cofedmid.experiment import ExperimentConfig, run_experiment
    fake = lambda n, off: torchvision.datasets.FakeData(n, (3, 12, 12), num_classes=3, transform=transforms.ToTensor(), random_offset=off)
    data = from_torch(fake(300, 0), fake(60, 5000), name='fake12')
    class Net(nn.Module):
        def __init__(self, n_classes, in_channels):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(in_channels, 6, 3), nn.GroupNorm(2, 6), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
            self.head = nn.Linear(24, n_classes)
        def forward(self, x): return self.head(self.body(x))
    register_model('net12', Net)
    cfg = ExperimentConfig(dataset='fake12', model='net12', n_clients=3, per_client=60, n_ofl=60, n_val=20, members_per_client=30,
                           rounds=2, local_epochs=1, batch_size=20, record_every=1, eval_size=None, defense='cofedmid', defended='pair')
    res = run_experiment(cfg, tmp_path/'run', verbose=False)
    assert set(res.dataset) == {'fake12'} and set(res.model) == {'net12'} and res.auc.between(0, 1).all()
    assert data.n_classes == 3 and (tmp_path/'run'/'trajectory.npz').is_file()
    with pytest.raises(ValueError, match='instead of nn.BatchNorm2d'):
        register_model('bn12', lambda k, c: nn.Sequential(nn.Conv2d(c, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(k)))


def test_demo_streams_progress_and_ends_with_a_verdict(tmp_path):
    "Like `make demo` on the smoke preset: both cells' first-round progress is printed live, the output ends with the verdict."
    import subprocess, sys, time
    cmd = [sys.executable, '-c', 'from cofedmid.cli import main; main()', 'run', '--preset', 'smoke', '--jobs', '2', '--out', str(tmp_path/'demo')]
    t0, seen = time.perf_counter(), []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        for line in p.stdout: seen.append((time.perf_counter() - t0, line.rstrip()))
    assert p.returncode == 0, seen[-5:]
    text = [l for _, l in seen]
    first = {c: next(i for i, l in enumerate(text) if l.startswith(f'[{c}] round   1/4  1/4 clients trained')) for c in ('defense=none', 'defense=cofedmid')}
    finished = next(i for i, l in enumerate(text) if l.lstrip().startswith('finished '))
    assert max(first.values()) < finished                              # progress arrives while the cells still run
    assert any(l.startswith('verdict: defense=cofedmid moved the strongest attack') for l in text[-4:]), text[-6:]
    assert any('AUC: 0.5 = chance' in l for l in text)
