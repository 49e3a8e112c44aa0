"""Fault injection: every way a careful user can break a run meets one clear line (and an exit status), before training
where it can be known then; nothing executes from a run folder; nothing is lost after training or under concurrency."""
import contextlib, io, json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from cofedmid import experiment as ex
from cofedmid.cli import cli
from cofedmid.core import folder_lock, save_state
from cofedmid.experiment import ExperimentConfig, ConfigError, preset, run_experiment, sweep
from cofedmid.fl import FedAvg

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ['--preset', 'smoke', '--quiet']

def _smoke(**kw) -> ExperimentConfig:
    return preset('smoke', **kw)[0]

def _cli(argv) -> tuple:
    "`(exit status, stdout, stderr)` of the command line `argv`, run in this process."
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try: cli([str(a) for a in argv])
        except SystemExit as e: code = e.code
    return code, out.getvalue(), err.getvalue()

def _one_line(code, out, err, status=2, contains=''):
    "The command failed with `status` and exactly one line on stderr, no traceback, containing `contains`."
    assert code == status, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err, err
    assert contains in lines[0], lines[0]

@pytest.fixture
def interrupt_at(monkeypatch):
    "`interrupt_at(r)`: the simulator raises KeyboardInterrupt (Ctrl-C) when it starts round `r`."
    real = FedAvg.run_round
    def arm(r):
        def run_round(self, *a, **k):
            if self.round + 1 == r: raise KeyboardInterrupt
            return real(self, *a, **k)
        monkeypatch.setattr(FedAvg, 'run_round', run_round)
    yield arm
    monkeypatch.setattr(FedAvg, 'run_round', real)

# --- nothing executed -------------------------------------------------------------------------------------------------

class _Payload:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))

def test_crafted_checkpoint_does_not_run(tmp_path):
    "A pickle planted as `checkpoint.pt` is refused on --resume with one line; its payload never runs."
    out, marker = tmp_path/'run', tmp_path/'pwned'
    cfg = _smoke(defense='none', rounds=2); out.mkdir(); cfg.save(out/'config.json')
    torch.save({'round': 1, 'x': _Payload(marker)}, out/'checkpoint.pt')
    code, _, err = _cli(['run', '--out', out, '--resume', '--quiet'])
    _one_line(code, '', err, 2, 'checkpoint.pt is not a readable cofedmid checkpoint')
    assert not marker.exists()

def test_checkpoint_holds_plain_data(tmp_path, interrupt_at):
    "The runner's checkpoint loads with `torch.load(weights_only=True)` (tensors and plain data only)."
    interrupt_at(2)
    with pytest.raises(KeyboardInterrupt, match='interrupted after round 1'): run_experiment(_smoke(defense='cofedmid'), tmp_path, verbose=False)
    d = torch.load(tmp_path/'checkpoint.pt', weights_only=True)
    assert d['format'] == 'cofedmid-state/1' and all(isinstance(t, torch.Tensor) for t in d['tensors'])

# --- every config problem before training and before any file ---------------------------------------------------------

@pytest.mark.parametrize('sets, msg', [
    (['n_clients=100', 'per_client=64'], 'but the synthetic training split has 320'),
    (['n_ofl=400'], 'but the synthetic training split has 320'),
    (['synthetic={n_trian: 9}'], "unexpected keyword argument 'n_trian'"),
    (['n_clients=2', 'attacks=[loss, fedmia_1]'], "attack 'fedmia_1' needs at least 3 clients"),
    (['lr=abc'], "lr='abc' must be a finite number"),
    (['lr=.inf'], 'lr=inf must be a finite number'),
    (['target=true'], 'target=True must be an integer or null'),
    (['grad_signals="no"'], "grad_signals='no' must be true or false"),     # quoted: a string, not YAML's false
    (["augment='no'"], "augment='no' must be true or false"),
])
def test_bad_values_stop_before_any_file(tmp_path, sets, msg):
    code, _, err = _cli(['run', *SMOKE, '--grid', 'seed=0', '--out', tmp_path/'out', '--set', *sets])
    _one_line(code, '', err, 2, msg)
    assert not (tmp_path/'out').exists()

@pytest.mark.parametrize('name, text, msg', [
    ('c.yaml', 'dataset: synthetic\nrounds: [1\n', 'c.yaml is not valid YAML'),
    ('c.json', '{"rounds": 2,}', 'c.json is not valid JSON'),
    ('c.yaml', 'momentum: "0.9"\n', "momentum='0.9' must be a finite number"),
    ('c.yaml', '- 1\n- 2\n', 'must hold a mapping of config fields'),
])
def test_bad_config_files(tmp_path, name, text, msg):
    (tmp_path/name).write_text(text)
    code, _, err = _cli(['run', '--config', tmp_path/name, '--out', tmp_path/'out', '--quiet'])
    _one_line(code, '', err, 2, msg)
    assert not (tmp_path/'out').exists()

def test_small_federation_skips_fedmia_and_says_so(tmp_path):
    "`n_clients=2` with every attack: FedMIA cannot run; the run finishes without it and the log says why."
    res = run_experiment(_smoke(defense='none', n_clients=2), tmp_path, verbose=False)
    assert not res.attack.str.startswith('fedmia').any() and res.auc.notna().any()
    assert 'fedmia_1: skipped in the upload view' in (tmp_path/'log.txt').read_text()

def test_client_sampling_skips_missing_rounds(tmp_path):
    "A target that skipped the attacked round: single-round upload attacks are skipped (logged), the run finishes."
    cfg = _smoke(defense='none', client_fraction=0.25, rounds=6, seed=2)
    res = run_experiment(cfg, tmp_path, verbose=False)
    assert len(res) and 'did not take part in recorded round' in (tmp_path/'log.txt').read_text()
    assert (tmp_path/'results.csv').is_file() and res.auc.notna().any()

# --- output folders and files -----------------------------------------------------------------------------------------

def test_out_problems_are_one_line(tmp_path):
    (tmp_path/'file').write_text('')
    _one_line(*_cli(['run', *SMOKE, '--grid', 'seed=0', '--out', tmp_path/'file']), 2, 'is a file, not a folder')
    _one_line(*_cli(['run', *SMOKE, '--grid', 'seed=0', '--out', tmp_path/'file'/'sub']), 2, 'Not a directory')
    run = tmp_path/'run'; run.mkdir(); (run/'config.json').write_text('{"rounds": ')
    _one_line(*_cli(['run', *SMOKE, '--set', 'defense=none', '--grid', 'seed=0', '--out', run, '--resume']), 2, 'holds a single run')
    _one_line(*_cli(['run', '--out', run, '--resume', '--quiet']), 2, 'config.json is not valid JSON')

def test_sweep_refuses_a_run_folder(tmp_path):
    run_experiment(_smoke(defense='none', rounds=1), tmp_path, verbose=False)
    before = (tmp_path/'results.csv').read_bytes()
    _one_line(*_cli(['sweep', *SMOKE, '--out', tmp_path, '--resume', '--set', 'rounds=1']), 2, 'holds a single run (config.json)')
    assert (tmp_path/'results.csv').read_bytes() == before

def test_file_modes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try: run_experiment(_smoke(defense='none', rounds=1), tmp_path, verbose=False)
    finally: os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir() if not p.name.startswith('.')}
    assert set(modes.values()) == {0o644}, modes

def test_cell_names_stay_inside_out(tmp_path):
    names, _, dirs = ex._sweep_cells(_smoke(), {'data_dir': ['a/../../../escaped']}, tmp_path)
    assert dirs[0].resolve().parent == (tmp_path/'cells').resolve() and '/' not in names[0]

def test_edited_cache_is_rebuilt(tmp_path, monkeypatch):
    "A cache whose arrays were edited (fewer images than labels) is rebuilt, with a warning, not used."
    from cofedmid import data
    monkeypatch.setitem(data._SPECS, '_toy', dict(title='toy', n_classes=3, per_class=(10, 10)))
    x, y = np.zeros((30, 4, 4, 3), np.uint8), np.repeat(np.arange(3), 10)
    p = data._save_cache('_toy', 'archive', tmp_path, (x, y), (x, y), list('abc'))
    with np.load(p) as z: arr = dict(z)
    with open(p, 'wb') as f: np.savez(f, **(arr | {'x_train': arr['x_train'][:20]}))
    with pytest.warns(UserWarning, match='rebuilding it'): assert data._load_cache(p, '_toy') is None

# --- nothing lost -----------------------------------------------------------------------------------------------------

def test_ctrl_c_says_how_to_resume_and_resume_is_identical(tmp_path, interrupt_at, monkeypatch):
    monkeypatch.setenv('COFEDMID_COALITION_SECRET', 'the members know it')      # the same noise in both runs
    cfg = _smoke(defense='cofedmid')
    run_experiment(cfg, tmp_path/'ref', verbose=False)
    cfg.save(tmp_path/'c.json')
    interrupt_at(3)
    code, _, err = _cli(['run', '--config', tmp_path/'c.json', '--out', tmp_path/'run', '--quiet'])
    _one_line(code, '', err, 130, f"interrupted after round 2; resume with: cofedmid run --out {tmp_path/'run'} --resume")
    (tmp_path/'run'/'.checkpoint.pt.k1ll.tmp').write_bytes(b'half')        # what a kill mid-write leaves
    interrupt_at(99)
    code, _, err = _cli(['run', '--out', tmp_path/'run', '--resume', '--quiet'])   # the command the line gave
    assert code == 0, err
    assert not list((tmp_path/'run').glob('.*.tmp'))                              # the orphan is gone
    for f in ('results.csv', 'scores.npz', 'trajectory.npz'):
        assert (tmp_path/'run'/f).read_bytes() == (tmp_path/'ref'/f).read_bytes(), f

def test_scoring_failure_loses_no_training(tmp_path, monkeypatch):
    "A crash while scoring: the trajectory is saved; resume scores it without training again; evaluate re-scores."
    def boom(*a, **k): raise RuntimeError('scoring crashed')
    monkeypatch.setattr(ex, '_score_run', boom)
    with pytest.raises(RuntimeError, match='scoring crashed'): run_experiment(_smoke(defense='none'), tmp_path, verbose=False)
    assert (tmp_path/'trajectory.npz').is_file() and not (tmp_path/'results.csv').exists()
    monkeypatch.undo()
    monkeypatch.setattr(FedAvg, 'run_round', lambda *a, **k: pytest.fail('trained again'))
    res = run_experiment(_smoke(defense='none'), tmp_path, resume=True, verbose=False)
    assert 'fedmia_1' in set(res.attack)
    code, out, err = _cli(['evaluate', tmp_path, '--attacks', 'loss', 'grad_cosine', '--views', 'upload', '--quiet'])
    assert code == 0, err
    res = pd.read_csv(tmp_path/'results.csv')
    assert set(res.attack) == {'loss', 'grad_cosine'} and set(res.view) == {'upload'}
    assert json.loads((tmp_path/'config.json').read_text())['attacks'] == ['loss', 'grad_cosine']
    _one_line(*_cli(['evaluate', tmp_path/'nope']), 2, 'holds no config.json')

def test_diverged_run_exits_3(tmp_path):
    code, out, err = _cli(['run', *SMOKE, '--grid', 'seed=0', '--set', 'defense=none', 'lr=1e6', 'rounds=2', '--out', tmp_path])
    _one_line(code, '', err, 3, 'the model diverged')
    assert 'ROC plots' not in out or any(tmp_path.glob('**/roc.png'))

def test_resume_under_another_thread_count_is_identical(tmp_path, interrupt_at, monkeypatch):
    "A cell started with 1 thread and resumed by a sweep worker with 2 keeps its recorded count: byte-identical."
    monkeypatch.setenv('COFEDMID_COALITION_SECRET', 'the members know it')
    cfg = _smoke(defense='cofedmid')
    ex._run_cell(cfg, tmp_path/'ref', 1, False)
    interrupt_at(3)
    with pytest.raises(KeyboardInterrupt): ex._run_cell(cfg, tmp_path/'cell', 1, False)
    interrupt_at(99)
    ex._run_cell(cfg, tmp_path/'cell', 2, False)
    assert json.loads((tmp_path/'cell'/'config.json').read_text())['threads'] == 1
    for f in ('results.csv', 'scores.npz'): assert (tmp_path/'cell'/f).read_bytes() == (tmp_path/'ref'/f).read_bytes()

# --- concurrency ------------------------------------------------------------------------------------------------------

def test_locked_run_gets_exit_4(tmp_path):
    "Two processes on one run: the second is refused at once (exit 4) instead of training every round twice."
    cfg = _smoke(defense='none', rounds=1); cfg.save(tmp_path/'c.json')
    with folder_lock(tmp_path/'run'):
        _one_line(*_cli(['run', '--config', tmp_path/'c.json', '--out', tmp_path/'run', '--quiet']), 4,
                  f'is in use by another process (pid {os.getpid()})')

def _bg(argv, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), IN_TEST='1')
    return subprocess.Popen([str(Path(sys.executable).parent/'cofedmid'), *map(str, argv)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

def test_two_sweeps_into_one_folder_keep_every_row(tmp_path):
    common = ['sweep', '--preset', 'smoke', '--quiet', '--set', 'rounds=1', 'attacks=[loss]', '--jobs', '1', '--out', tmp_path, '--resume']
    a, b = _bg([*common, '--grid', 'seed=0,1', 'defense=none']), _bg([*common, '--grid', 'seed=2,3', 'defense=none'])   # into one folder at once
    for p in (a, b): assert p.wait(300) == 0, p.stderr.read()
    cells = set(pd.read_csv(tmp_path/'results.csv').cell)
    assert cells == {f'defense=none,seed={s}' for s in range(4)}, cells

def test_workers_die_with_their_parent(tmp_path):
    p = _bg(['sweep', '--preset', 'smoke', '--quiet', '--set', 'rounds=50', '--jobs', '2', '--grid', 'seed=0,1', '--out', tmp_path],
            start_new_session=True)
    kids, t0 = [], time.time()
    while len(kids) < 2 and time.time() - t0 < 120:
        time.sleep(0.5)
        kids = subprocess.run(['pgrep', '-P', str(p.pid)], capture_output=True, text=True).stdout.split()
        kids = [k for k in kids if 'multiprocessing' in Path(f'/proc/{k}/cmdline').read_text(errors='ignore')] if kids else []
    assert len(kids) >= 2, 'the sweep did not start its workers'
    os.kill(p.pid, signal.SIGKILL); p.wait()
    t0 = time.time()
    while any(Path(f'/proc/{k}').exists() and 'Z' not in Path(f'/proc/{k}/stat').read_text().split()[2] for k in kids) and time.time() - t0 < 20:
        time.sleep(0.5)
    alive = [k for k in kids if Path(f'/proc/{k}').exists() and 'Z' not in Path(f'/proc/{k}/stat').read_text().split()[2]]
    for k in alive: os.kill(int(k), signal.SIGKILL)
    assert not alive, f'workers {alive} outlived their parent'

def test_unusable_shared_cache_falls_back(tmp_path, monkeypatch):
    "A shared cache that cannot be written (here: its path runs through a file, which stops root too) → a private one."
    from cofedmid import data
    monkeypatch.setitem(data._SPECS, '_toy', dict(title='toy', n_classes=3, per_class=(10, 10)))
    monkeypatch.setattr(data, '_private_cache', lambda: tmp_path/'private')
    (tmp_path/'shared').write_text('')
    x, y = np.zeros((30, 4, 4, 3), np.uint8), np.repeat(np.arange(3), 10)
    p = data._save_cache('_toy', 'archive', tmp_path/'shared'/'cache', (x, y), (x, y), list('abc'))
    assert p.parent == tmp_path/'private' and data._load_cache(p, '_toy') is not None

def test_drawn_coalition_secret_survives_a_resume(tmp_path, interrupt_at, monkeypatch):
    "Without a given secret the runner draws one, keeps it member-side (0600, in no server-side file) and resumes with it."
    monkeypatch.delenv('COFEDMID_COALITION_SECRET', raising=False)
    cfg = _smoke(defense='cofedmid')
    interrupt_at(3)
    with pytest.raises(KeyboardInterrupt): run_experiment(cfg, tmp_path/'run', verbose=False)
    f = tmp_path/'run'/'members'/'coalition.secret'
    secret = f.read_text()
    assert f.stat().st_mode & 0o777 == 0o600
    interrupt_at(99)
    run_experiment(cfg, tmp_path/'run', resume=True, verbose=False)
    assert f.read_text() == secret
    for p in (tmp_path/'run').iterdir():
        if p.is_file(): assert secret.encode() not in p.read_bytes(), p.name
    monkeypatch.setenv('COFEDMID_COALITION_SECRET', secret)                      # the same secret, given: the same run
    run_experiment(cfg, tmp_path/'ref', verbose=False)
    for n in ('results.csv', 'scores.npz'): assert (tmp_path/'run'/n).read_bytes() == (tmp_path/'ref'/n).read_bytes(), n

def test_bare_run_answers_at_once_without_the_library():
    "`cofedmid run` with nothing to run: exit 2 with the hint, in well under a second (torch is never imported)."
    code = ("import sys, time; t = time.perf_counter(); from cofedmid.cli import main\n"
            "try: main(['run'])\n"
            "except SystemExit as e: print(e.code, 'torch' in sys.modules, f'{time.perf_counter() - t:.3f}')")
    best = None
    for _ in range(3):                                  # best of three: a loaded machine may stall one start
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
        wall = time.perf_counter() - t0
        best = wall if best is None else min(best, wall)
        status, torch_loaded, _ = p.stdout.split()
        assert (status, torch_loaded) == ('2', 'False'), p.stdout
        assert 'say what to run: --preset NAME' in p.stderr and 'Traceback' not in p.stderr, p.stderr
    assert best < 1.0, f"bare `cofedmid run` took {best:.2f} s (interpreter start included)"
