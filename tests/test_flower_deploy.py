"Flower's deployment engine on 127.0.0.1: the explanation's commands, run verbatim, give the in-process run's results."
import json, os, sys, tempfile
from pathlib import Path
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.deployment import run_documented, documented_steps

def test_deployment_commands_match_inprocess(tmp_path, monkeypatch):
    "A SuperLink and three SuperNodes (each on its own partition file, none with the dataset) run the documented steps."
    pytest.importorskip('flwr')
    data = os.environ.get('COFEDMID_DATA')
    if not data or not Path(data).is_dir(): pytest.skip('needs CIFAR-10 in $COFEDMID_DATA')
    out = run_documented(tmp_path)['out']
    from cofedmid.experiment import load_config, run_experiment
    secret = next(l.split()[0].split('=')[1] for l in documented_steps()[1] if l.startswith('COFEDMID_COALITION_SECRET='))
    monkeypatch.setenv('COFEDMID_COALITION_SECRET', secret)                 # the in-process reference: the members' secret
    run_experiment(load_config(tmp_path/'experiment.yaml'), tmp_path/'inprocess', verbose=False)
    pd.testing.assert_frame_equal(pd.read_csv(out/'results.csv'), pd.read_csv(tmp_path/'inprocess'/'results.csv'))
    with np.load(out/'trajectory.npz') as a, np.load(tmp_path/'inprocess'/'trajectory.npz') as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files: np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for f in out.iterdir():                                                 # nothing of the secret on the server's side
        if f.is_file(): assert secret.encode() not in f.read_bytes(), f
    last = json.loads((out/'history.json').read_text())[-1]['clients']
    assert all(last[str(k)]['noise_norm'] > 0 for k in (0, 1)) and 'noise_norm' not in last['2']   # the members added noise

def test_committed_app_folder_is_write_app():
    "The repository's `flower-app/` is what `cofedmid flower app` writes."
    from cofedmid.flower import write_app
    with tempfile.TemporaryDirectory() as d:
        made = write_app(Path(d)/'app')
        names = sorted(str(p.relative_to(made)) for p in made.rglob('*') if p.is_file())
        assert names == ['cofedmid_app.py', 'flwr/config.toml', 'pyproject.toml']
        for n in names: assert (made/n).read_text() == (ROOT/'flower-app'/n).read_text(), f"flower-app/{n} differs: cofedmid flower app flower-app"
