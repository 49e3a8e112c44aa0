"The book's committed results that carry per-candidate scores: `cofedmid report` rebuilds their tables byte for byte, and no TPR is reported where it cannot be resolved."
import shutil
from pathlib import Path
import pandas as pd
import pytest
from cofedmid.experiment import report, write_summaries, load_results, preset, grid_cells, cell_name

RESULTS = Path(__file__).resolve().parents[1]/'nbs'/'tutorials'/'results'
# a folder whose every run kept its scores (`scores.npz`): a run folder, or a sweep folder whose every cell has them
FOLDERS = sorted(p.name for p in RESULTS.iterdir() if p.is_dir() and (
    (p/'scores.npz').is_file() or ((p/'cells').is_dir() and all((c/'scores.npz').is_file() for c in (p/'cells').iterdir()))))
TABLES = ('results.csv', 'summary.csv', 'strongest.csv')

def test_the_committed_score_folders_are_found():
    assert {'base', 'adaptive', 'cifar10'} <= set(FOLDERS)

def _run_tables(folder: Path) -> list:
    "The `results.csv` of a run folder, or of every cell of a sweep folder (its `cells` may be a link: followed)."
    cells = sorted((folder/'cells').iterdir()) if (folder/'cells').is_dir() else [folder]
    return [c/'results.csv' for c in cells if (c/'results.csv').is_file()]

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
    for f in _run_tables(RESULTS/name):
        r = pd.read_csv(f, low_memory=False)
        for col, a in (('tpr_at_1pct_fpr', 0.01), ('tpr_at_0_1pct_fpr', 0.001)):
            bad = r[r[col].notna() & (r.n_nonmembers * a < 5)]
            assert bad.empty, f"{f.relative_to(RESULTS)}: {len(bad)} rows report {col} with n_nonmembers * {a} < 5"

MAIN_TABLE = [cell_name(c) for c in grid_cells(preset('tables')[1])]   # the book's 13 settings, as `summarize` names them

def test_the_cifar10_book_table():
    "The book's CIFAR-10 folder: every main-table setting with >= 3 seeds, with plain and adaptive columns for both models; the undefended federation leaks (strongest trajectory attack >= 0.80 on the uploads vs OFL)."
    from cofedmid.attacks import ATTACKS
    from cofedmid.trajectory import ADAPTIVE_VIEWS
    s = pd.read_csv(RESULTS/'cifar10'/'summary.csv')
    assert {'setting', 'attack', 'view', 'nonmembers', 'target_defended', 'auc_mean', 'auc_ci_low', 'auc_ci_high',
            'n_runs', 'test_acc_mean'} <= set(s.columns)
    runs = s.groupby('setting').n_runs.min()
    assert (runs.reindex(MAIN_TABLE) >= 3).all(), runs.reindex(MAIN_TABLE)
    st = pd.read_csv(RESULTS/'cifar10'/'strongest.csv')
    for (setting, nm), g in st[st.setting.isin(MAIN_TABLE)].groupby(['setting', 'nonmembers']):
        assert set(g.view) == {'upload', 'global'}, (setting, nm)
        assert g[['strongest_auc_ci_low', 'adaptive_auc_ci_low', 'test_acc_ci_low']].notna().all().all(), (setting, nm)
    none = s[(s.setting == 'defense=none') & (s.view == 'upload') & (s.nonmembers == 'ofl')
             & s.attack.map(lambda a: ATTACKS[a].kind == 'trajectory')]
    assert none.auc_mean.max() >= 0.80, none[['attack', 'auc_mean']]
    for setting, g in s[s.setting.isin(MAIN_TABLE)].groupby('setting'):        # adaptive rows for every cell
        assert set(ADAPTIVE_VIEWS) <= set(g.view) and any(ATTACKS[a].kind == 'adaptive' for a in g.attack), setting
