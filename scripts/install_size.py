"""Installed size of cofedmid's runtime dependencies (no extras), summed from the RECORD files of the installed
distributions: what `pip install cofedmid` puts on disk. Usage: `python scripts/install_size.py` (in the venv to measure)."""
import importlib.metadata as md, re, os
from pathlib import Path
from packaging.requirements import Requirement
def norm(n): return re.sub(r'[-_.]+', '-', n).lower()
dists = {norm(d.metadata['Name']): d for d in md.distributions()}
seen, todo = set(), ['cofedmid']
while todo:
    n = norm(todo.pop())
    if n in seen or n not in dists: continue
    seen.add(n)
    for r in dists[n].requires or []:
        req = Requirement(r)
        if req.marker and not req.marker.evaluate({'extra': ''}): continue
        todo.append(req.name)
def size(d):
    tot = 0
    for f in d.files or []:
        p = Path(d.locate_file(f))
        if p.is_file(): tot += p.stat().st_size
    return tot
s = {n: size(dists[n]) for n in seen if n != 'cofedmid'}
gb = lambda b: f'{b/1e9:.2f} GB'
cuda = {n: b for n, b in s.items() if n.startswith(('nvidia', 'cuda', 'triton'))}
print('packages:', len(s), 'total', gb(sum(s.values())))
print('CUDA libraries (nvidia-*, cuda-*, triton):', len(cuda), gb(sum(cuda.values())))
print('torch', gb(s.get('torch', 0)), 'torchvision', gb(s.get('torchvision', 0)))
for n, b in sorted(s.items(), key=lambda x: -x[1])[:12]: print(f'  {n:30} {b/1e6:8.0f} MB')
