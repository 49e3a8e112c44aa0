"""Export the notebooks and clean them; fail if either step changed a file (library out of sync, notebook not clean),
or if README.md is not what `nbs/index.ipynb` gives (`python scripts/build_docs.py --readme` writes it).

Compares file contents before and after, so it works in a clean CI clone (where it is the same as `git status`)
and in a working tree with uncommitted edits."""
import hashlib, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def snapshot():
    files = [p for d in ('cofedmid', 'nbs') for p in (ROOT/d).rglob('*') if p.is_file() and '__pycache__' not in p.parts
             and '.ipynb_checkpoints' not in p.parts and p.suffix in ('.py', '.ipynb')]
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

def changed(before, after): return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))

def main():
    from nbdev.doclinks import nbdev_export
    from nbdev.clean import nbdev_clean
    s0 = snapshot(); nbdev_export(); s1 = snapshot()
    lib = [f for f in changed(s0, s1) if f.startswith('cofedmid')]
    nbdev_clean(); s2 = snapshot()
    nbs = [f for f in changed(s1, s2) if f.startswith('nbs')]
    if lib: print('nbdev_export changed the library (it was out of sync with nbs/; commit the exported files):', *lib, sep='\n  ')
    if nbs: print('nbdev_clean changed notebooks (commit the cleaned notebooks):', *nbs, sep='\n  ')
    sys.path.insert(0, str(ROOT/'scripts'))
    from build_docs import readme_stale, README_CMD
    readme = readme_stale(ROOT)
    if readme: print(f'README.md is out of date with nbs/index.ipynb: regenerate it with `{README_CMD}` (or `make docs`) and commit it')
    if lib or nbs or readme: sys.exit(1)
    print(f'library in sync with {sum(k.endswith(".ipynb") for k in s2)} notebooks; notebooks clean; README.md up to date')

if __name__ == '__main__': main()
