"Run every notebook in nbs/ with nbdev's runner: one test per notebook, skipping cells flagged in `tst_flags`."
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as _run_nb

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT/'nbs').parts))

@pytest.mark.parametrize('nb', NBS, ids=[str(p.relative_to(ROOT/'nbs')) for p in NBS])
def test_notebook(nb, request, monkeypatch):
    flags = get_config(path=ROOT).tst_flags.split()
    force = ['slow'] if request.config.getoption('--runslow') else []
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv('COFEDMID_COALITION_SECRET', 'notebook tests')   # CoFedMID's noise: the same every run
    ok, secs = _run_nb(nb, skip_flags=flags, force_flags=force, basepath=ROOT)
    assert ok, f'{nb.name} failed (see the traceback above)'
