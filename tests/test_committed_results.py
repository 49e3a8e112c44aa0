"The book's committed results that carry per-candidate scores: `cofedmid report` rebuilds their tables byte for byte, and no TPR is reported where it cannot be resolved."
import shutil
from pathlib import Path
import pandas as pd
import pytest
from cofedmid.experiment import report, write_summaries, load_results

RESULTS = Path(__file__).resolve().parents[1]/'nbs'/'tutorials'/'results'
# a folder whose every run kept its scores (`scores.npz`): a run folder, or a sweep folder whose every cell has them
FOLDERS = sorted(p.name for p in RESULTS.iterdir() if p.is_dir() and (
    (p/'scores.npz').is_file() or ((p/'cells').is_dir() and all((c/'scores.npz').is_file() for c in (p/'cells').iterdir()))))
TABLES = ('results.csv', 'summary.csv', 'strongest.csv')

def test_the_committed_score_folders_are_found():
    assert {'base', 'adaptive'} <= set(FOLDERS)

MAX_CELLS = 4   # a bigger sweep (the book's: 51 cells, ~10-25 s each to rescore) has its first and last cell rebuilt

def _same(src: Path, dst: Path, name: str):
    for f in [p.relative_to(src) for p in src.rglob('*.csv') if p.name in TABLES and (dst/p.relative_to(src)).is_file()]:
        assert (dst/f).read_bytes() == (src/f).read_bytes(), f"{name}/{f} is not what cofedmid report makes"

@pytest.mark.parametrize('name', FOLDERS)
def test_report_reproduces_the_committed_tables(name, tmp_path):
    "`cofedmid report` on a copy of the folder writes the same results, summary and strongest tables."
    src, dst = RESULTS/name, tmp_path/name
    cells = sorted((src/'cells').iterdir()) if (src/'cells').is_dir() else []
    if len(cells) <= MAX_CELLS:
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns('*.png'))
        report(dst)
        return _same(src, dst, name)
    for c in (cells[0], cells[-1]):                      # two cells rescored from their scores, as run folders
        shutil.copytree(c, dst/'cells'/c.name, ignore=shutil.ignore_patterns('*.png'))
        report(dst/'cells'/c.name)
    write_summaries(dst, load_results(src))              # the sweep's summaries from its committed table
    _same(src, dst, name)

@pytest.mark.parametrize('name', FOLDERS)
def test_no_unresolvable_tpr_is_committed(name):
    "TPR at FPR a is NaN wherever fewer than 5 non-members could be false positives (n_nonmembers * a < 5)."
    for f in (RESULTS/name).rglob('results.csv'):
        r = pd.read_csv(f, low_memory=False)
        for col, a in (('tpr_at_1pct_fpr', 0.01), ('tpr_at_0_1pct_fpr', 0.001)):
            bad = r[r[col].notna() & (r.n_nonmembers * a < 5)]
            assert bad.empty, f"{f.relative_to(RESULTS)}: {len(bad)} rows report {col} with n_nonmembers * {a} < 5"
