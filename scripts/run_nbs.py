"""Execute notebooks in place so that their committed outputs (what the docs show) come from a real run.

Cells flagged with one of the `tst_flags` of settings.ini (`notest slow cuda`) or `#| eval: false` are skipped,
as in the test runner, unless named with `--flags` (e.g. `--flags slow` runs the slow cells too). Afterwards the
notebooks are cleaned with `nbdev_clean`. Usage: `python scripts/run_nbs.py nbs/tutorials/*.ipynb [--flags slow]`."""
import argparse, os, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _flags(src: str) -> set:
    "The `#|` directives at the top of a cell, e.g. {'slow', 'eval:false'}."
    out = set()
    for line in src.splitlines():
        m = re.match(r'\s*#\|\s*(.*)', line)
        if not m: break
        out.add(m[1].replace(' ', '').split(',')[0] if m[1].startswith('eval') else m[1].split()[0] if m[1].split() else '')
    return out

def run(nb_path: Path, skip: set):
    "Run `nb_path` top to bottom, skipping flagged cells, and write the outputs back."
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    nb = read_nb(nb_path)
    def no_eval(cell):
        if cell.cell_type != 'code': return True
        if 'nbdev_export(' in cell.source: return True
        f = _flags(cell.source)
        return 'eval:false' in f or bool(f & skip)
    for c in nb.cells:
        if c.cell_type == 'code' and no_eval(c): c.outputs, c.execution_count = [], None
    sh = CaptureShell(nb_path, mpl_format='png')        # plain PNG at 80 dpi: small committed images
    sh._run("import matplotlib; matplotlib.rcParams['figure.dpi'] = 80")
    cwd = os.getcwd(); os.chdir(nb_path.parent)
    try: sh.run_all(nb, exc_stop=True, preproc=no_eval)
    finally: os.chdir(cwd)
    write_nb(nb, nb_path)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('notebooks', nargs='+')
    p.add_argument('--flags', nargs='*', default=[], help='flags to run that are normally skipped (e.g. slow)')
    a = p.parse_args()
    from nbdev.config import get_config
    skip = set(get_config(path=ROOT).tst_flags.split()) - set(a.flags)
    os.environ['IN_TEST'] = '1'          # no progress bars in committed outputs
    sys.path.insert(0, str(ROOT))
    for f in a.notebooks:
        print(f'running {f}', flush=True); run(Path(f).resolve(), skip)
    from nbdev.clean import nbdev_clean
    for f in a.notebooks: nbdev_clean(fname=f)

if __name__ == '__main__': main()
