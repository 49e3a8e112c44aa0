"""Run every notebook in nbs/ with nbdev's runner, each alone in a fresh process, at 1 and at 2 torch threads (torch
results depend on the thread count, and a notebook must pass as a reader runs it: alone, top to bottom); cells
flagged in `tst_flags` are skipped."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p for p in (ROOT/'nbs').rglob('*.ipynb')
             if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT/'nbs').parts))

_RUN = """import sys, torch
from pathlib import Path
torch.set_num_threads({threads})
from nbdev.config import get_config
from nbdev.test import test_nb
ok, _ = test_nb(Path({nb!r}), skip_flags=get_config().tst_flags.split(), force_flags={force!r}, basepath=Path({root!r}))
sys.exit(0 if ok else 1)"""

@pytest.mark.parametrize('threads', [1, 2])
@pytest.mark.parametrize('nb', NBS, ids=[str(p.relative_to(ROOT/'nbs')) for p in NBS])
def test_notebook(nb, threads, request):
    force = ['slow'] if request.config.getoption('--runslow') else []
    code = _RUN.format(threads=threads, nb=str(nb), force=force, root=str(ROOT))
    env = dict(os.environ, COFEDMID_COALITION_SECRET='notebook tests',   # CoFedMID's noise: the same every run
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep))
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, f"{nb.name} failed alone at {threads} thread(s):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
