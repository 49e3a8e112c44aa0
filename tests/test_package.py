"""The package as a user gets it: the sdist and wheel `python -m build` makes (with the book's committed results as
package data), their metadata, `book_results` in an unpacked wheel, and every chapter run by nbdev's runner in an
empty folder against the wheel installed in a fresh virtualenv.

The builds use `--no-isolation` (the running venv's setuptools, no download). The fresh virtualenv gets the wheel
with `pip install --no-deps` and sees the running venv's packages (torch, nbdev, ...) through a `.pth` file: a real
install of the dependencies would download about 5 GB of torch and CUDA libraries for every test run. `.pth` path
lines do not run the running venv's own `.pth` hooks, so its editable `cofedmid` stays invisible and the chapters
import the wheel's copy (the test checks which one they import)."""
import json, os, re, shutil, subprocess, sys, sysconfig, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT/'nbs'/'tutorials').glob('*.ipynb'))
# what the chapters read of the committed results (through `book_results`)
BOOK_FILES = ['README.md', 'cifar10/summary.csv', 'cifar10/strongest.csv', 'base/results.csv', 'base/summary.csv',
              'cifar10/cells/seed=0,defense=none/config.json', 'cifar10/cells/seed=0,defense=none/history.json',
              'cifar10/cells/seed=0,defense=cofedmid/adaptive.json', 'cifar10/cells/seed=0,defense=cofedmid/logs.csv']
SOURCES = ['setup.py', 'settings.ini', 'pyproject.toml', 'README.md', 'LICENSE', 'MANIFEST.in', 'constraints.txt']

def _code(nb: Path) -> list[str]:
    return [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']

@pytest.fixture(scope='module')
def dist(tmp_path_factory) -> Path:
    "`python -m build` (sdist, then the wheel from the sdist) of a copy of the project; the folder with both."
    tmp = tmp_path_factory.mktemp('build')
    src = tmp/'src'; src.mkdir()
    for f in SOURCES: shutil.copy2(ROOT/f, src/f)
    shutil.copytree(ROOT/'cofedmid', src/'cofedmid', ignore=shutil.ignore_patterns('__pycache__', 'results'))
    shutil.copytree(ROOT/'nbs'/'tutorials'/'results', src/'nbs'/'tutorials'/'results',   # through the cells' link
                    ignore=shutil.ignore_patterns('*.npz', '*.png', '*.pt'))            # what setup.py never ships
    r = subprocess.run([sys.executable, '-m', 'build', '--no-isolation', '--outdir', str(tmp/'dist'), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return tmp/'dist'

def _wheel(dist: Path) -> Path: return next(dist.glob('cofedmid-*.whl'))

def test_wheel_contents(dist):
    "The wheel has the library, the book's tables and JSON files (not scores, logs or plots), the licence and full metadata."
    z = zipfile.ZipFile(_wheel(dist))
    names = set(z.namelist())
    assert {'cofedmid/core.py', 'cofedmid/experiment.py', 'cofedmid/_modidx.py'} <= names
    missing = [f for f in BOOK_FILES if f'cofedmid/results/{f}' not in names]
    assert not missing, f'book results missing from the wheel: {missing}'
    data = [n for n in names if n.startswith('cofedmid/results/')]
    assert not [n for n in data if n.endswith(('.npz', '.png', '.txt', '.pt'))], 'scores, plots or logs in the wheel'
    assert sum(z.getinfo(n).file_size for n in data) < 8e6
    meta = z.read(next(n for n in names if n.endswith('.dist-info/METADATA'))).decode()
    for field in ('License: Apache-2.0', 'License-File: LICENSE', 'Requires-Python: >=3.10', 'Project-URL: Documentation',
                  'Requires-Dist: torch', 'Description-Content-Type: text/markdown', 'Author-email:'):
        assert field in meta, field
    assert any(n.endswith('.dist-info/licenses/LICENSE') for n in names)
    assert 'cofedmid = cofedmid.cli:main' in z.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()

def test_sdist_builds_the_same_data(dist):
    "The sdist carries settings.ini, the licence and the results setup.py ships (the wheel above was built from it)."
    import tarfile
    names = tarfile.open(next(dist.glob('cofedmid-*.tar.gz'))).getnames()
    for f in ('settings.ini', 'LICENSE', 'nbs/tutorials/results/cifar10/summary.csv',
              'nbs/tutorials/results/cifar10/cells/seed=0,defense=none/config.json'):
        assert any(n.endswith('/' + f) for n in names), f

def test_twine_check(dist):
    pytest.importorskip('twine', reason='twine is not installed (pip install twine)')
    r = subprocess.run([sys.executable, '-m', 'twine', 'check', '--strict', *map(str, dist.iterdir())], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

def test_book_results_from_the_wheel(dist, tmp_path):
    "An unpacked wheel, imported from an empty folder, finds every chapter's results inside itself; a wrong name says what exists."
    site, empty = tmp_path/'site', tmp_path/'empty'
    zipfile.ZipFile(_wheel(dist)).extractall(site); empty.mkdir()
    code = ("import json; from cofedmid.core import book_results as b\n"
            f"files = {BOOK_FILES!r}\n"
            "print(json.dumps({'root': str(b()), 'ok': [(b()/f).is_file() for f in files], 'cifar10': str(b('cifar10'))}))\n"
            "try: b('cifar1000')\nexcept FileNotFoundError as e: print(e)")
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'} | {'PYTHONPATH': str(site)}
    r = subprocess.run([sys.executable, '-c', code], cwd=empty, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out, err = r.stdout.splitlines()[0], r.stdout.splitlines()[1]
    res = json.loads(out)
    assert res['root'] == str(site/'cofedmid'/'results') and all(res['ok']), res
    assert res['cifar10'] == str(site/'cofedmid'/'results'/'cifar10')
    assert "no book results 'cifar1000'" in err and 'it has adaptive, base, cifar10' in err, err

def test_chapters_read_through_book_results():
    "No chapter reads the committed results by a path relative to its folder (which an empty folder or Colab lacks)."
    bad = [(nb.name, line.strip()) for nb in CHAPTERS for code in _code(nb) for line in code.splitlines()
           if re.search(r"""Path\(\s*['"]results|['"]results/""", line)]
    assert not bad, f'relative reads of the results (use book_results): {bad}'
    assert sum('book_results(' in ''.join(_code(nb)) for nb in CHAPTERS) >= 6

def test_first_cell_installs():
    "Every chapter's first code cell installs cofedmid where it is missing: PyPI first, the git repository as fallback."
    for nb in CHAPTERS:
        first = _code(nb)[0]
        assert "find_spec('cofedmid') is None" in first and "['cofedmid']" in first and 'git+https://github.com/cofedmid/cofedmid' in first, nb.name

def _clean_env() -> dict:
    "The environment without what points at the checkout or the running venv (`PYTHONPATH` would show pip a `cofedmid`)."
    return {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}

def _venv_with_wheel(dist: Path, tmp: Path) -> Path:
    "A fresh virtualenv with the wheel installed (no dependencies) that sees the running venv's packages; its python."
    subprocess.run([sys.executable, '-m', 'venv', str(tmp/'ve')], check=True, timeout=300, env=_clean_env())
    py = tmp/'ve'/'bin'/'python'
    purelib = subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                             capture_output=True, text=True, check=True, env=_clean_env()).stdout.strip()
    r = subprocess.run([str(py), '-m', 'pip', 'install', '-q', '--no-deps', '--no-index', str(_wheel(dist))],
                       capture_output=True, text=True, timeout=300, env=_clean_env())
    assert r.returncode == 0 and 'already satisfied' not in r.stdout, r.stdout + r.stderr
    # only now the running venv's packages: before, pip would see its (editable) cofedmid and not install the wheel
    (Path(purelib)/'shared_venv.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    return py

RUNNER = """import sys, cofedmid, torch
from pathlib import Path
from nbdev.test import test_nb
print('cofedmid from', cofedmid.__file__, flush=True)
ok, secs = test_nb(Path(sys.argv[1]), skip_flags=sys.argv[2].split())
print(f'{Path(sys.argv[1]).name}: {"ok" if ok else "FAILED"} in {secs:.0f} s', flush=True)
sys.exit(0 if ok else 1)"""

def test_chapters_from_the_installed_wheel(dist, tmp_path):
    "Every chapter, copied alone into an empty folder, passes nbdev's runner against the installed wheel (slow cells skipped)."
    from nbdev.config import get_config
    py = _venv_with_wheel(dist, tmp_path)
    book = tmp_path/'book'; book.mkdir()
    env = _clean_env() | {'OMP_NUM_THREADS': '2', 'MPLBACKEND': 'Agg'}
    flags = get_config(path=ROOT).tst_flags
    failed = []
    for nb in CHAPTERS:
        shutil.copy2(nb, book/nb.name)
        r = subprocess.run([str(py), '-c', RUNNER, str(book/nb.name), flags], cwd=book, env=env, capture_output=True, text=True, timeout=1200)
        print(r.stdout)
        assert f"cofedmid from {tmp_path/'ve'}" in r.stdout, r.stdout + r.stderr[-2000:]
        if r.returncode: failed.append(f'{nb.name}:\n{r.stderr[-3000:]}')
        (book/nb.name).unlink()
    assert not failed, '\n\n'.join(failed)
    assert sorted(p.name for p in book.iterdir() if p.suffix == '.ipynb') == []
