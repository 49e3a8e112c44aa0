"""Build the documentation site (into `docs/`) and `README.md` from the notebooks.

    python scripts/build_docs.py               # the site into docs/, then README.md (what `make docs` runs)
    python scripts/build_docs.py --readme      # only README.md, from nbs/index.ipynb
    python scripts/build_docs.py --out DIR     # the site into DIR (e.g. a scratch folder)
    python scripts/build_docs.py --strict      # exit 1 on a failed doc cell or a broken link

Steps (nbdev 2.4 without its Quarto-only commands):
1. nbdev's own steps, called from Python: `refresh_quarto_yml()` (nbs/nbdev.yml, nbs/_quarto.yml),
   `_build_modidx()` (cofedmid/_modidx.py), `nbdev_sidebar` (nbs/sidebar.yml).
2. Notebooks -> `_proc/` with nbdev's processors (`FilterDefaults`: front matter, hidden cells removed, `show_doc`
   output, doc links), in a spawn pool as `nbdev.serve.proc_nbs` does, with two differences: cells flagged with a
   test flag (`slow`, `cuda`, `notest`) never run, and a failing cell is reported instead of stopping the build
   (its committed outputs are kept), so one notebook being edited cannot break the site. Ordinary cells are never
   run: pages show the outputs committed in the notebooks (`scripts/run_nbs.py` runs notebooks to commit them).
3. Fixes on `_proc/`: each notebook renamed to its `output-file` (`api/00_core.ipynb` -> `api/core.ipynb`, the
   page `_modidx.py` links to) with the sidebar and links following; nbdev's absolute doc links
   (`doc_host/doc_baseurl/...`) made page-relative so the site also works from `file://`; sidebar sections named.
4. Render `_proc/`: with Quarto when `quarto` is on the PATH, else with the pure-Python renderer smalldocs. KaTeX
   is served from the site itself (`site_libs/katex/`, copied from the committed site or fetched once with
   `npm pack katex@<version smalldocs expects>`), not from a CDN.
5. The new site replaces the output folder only once it is complete.

README.md is made from `nbs/index.ipynb` by the same processors without running anything (committed outputs), and a
small, deterministic Markdown writer; `readme_text()` is what `scripts/check_sync.py` compares README.md with.
"""
from __future__ import annotations
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
KATEX_FILES = ('katex.min.js', 'katex.min.css', 'contrib/auto-render.min.js')
SECTION_TITLES = {'tutorials': 'Tutorials', 'explanations': 'Explanations', 'api': 'API reference'}
SECTION_ORDER = ['tutorials', 'explanations', 'api']  # sidebar order after the home page; other folders go last
README_CMD = 'python scripts/build_docs.py --readme'
_SITE = '@@DOC-SITE@@/'   # stands for doc_host + doc_baseurl while links are made relative

def _say(*a): print(*a, file=sys.stderr, flush=True)

# ---------------------------------------------------------------- processing notebooks (runs in worker processes)

def _procs(run_cells: bool, skip_flags: set):
    "nbdev's default processors, with a tolerant `exec_show_docs` (or none when `run_cells` is False)."
    from nbdev.processors import FilterDefaults, exec_show_docs, _do_eval
    from fastcore.basics import str2bool

    class exec_docs(exec_show_docs):
        "nbdev's `exec_show_docs`: skips cells flagged with a test flag and records failures instead of raising."
        problems: list
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            if str2bool(getattr(self.nb, 'frontmatter_', {}).get('skip_showdoc', False)): return
            if set(cell.directives_) & skip_flags: return
            if not _do_eval(cell): return
            old = cell.get('outputs')
            self.k.cell(cell)
            if self.k.exc:
                doc = bool(set(cell.directives_) & {'export', 'exports', 'exporti', 'exec_doc'}) or 'show_doc' in cell.source
                msg = f'cell {cell.idx_} failed ({type(self.k.exc).__name__}: {self.k.exc})'
                self.problems.append(('error' if doc else 'warning', msg + ('' if doc else '; its committed outputs are kept')))
                if old is not None: cell.outputs = old
                self.k.exc = None

    class Filter(FilterDefaults):
        def base_procs(self):
            ps = super().base_procs()
            return [p for p in ps if p is not exec_show_docs] if not run_cells else [exec_docs if p is exec_show_docs else p for p in ps]
    return Filter, exec_docs

def _proc_one(item):
    "Process one notebook `src` into `dst` (in a worker process); return `(src, [(level, message)])`."
    src, dst, skip_flags = item
    os.environ['IN_TEST'] = '1'; os.environ.setdefault('MPLBACKEND', 'Agg')
    problems, t0 = [], time.time()
    try:
        from execnb.nbio import read_nb, write_nb
        Filter, exec_docs = _procs(True, set(skip_flags))
        exec_docs.problems = problems
        nb = read_nb(src)
        cwd = os.getcwd(); os.chdir(Path(src).parent)   # cells run where Jupyter and nbdev_test run them
        try:
            with warnings.catch_warnings(record=True) as ws:
                warnings.simplefilter('always')
                Filter()(nb)
        finally: os.chdir(cwd)
        for w in ws:
            if 'imports and other code' in str(w.message):
                problems.append(('note', 'a cell mixes imports with other code, so the docs build runs it:\n      '
                                 + str(w.message).split('---\n')[1].strip().split('\n')[0] + ' ...'))
        write_nb(nb, dst)
    except Exception as e:  # an unreadable notebook (e.g. saved half-way): leave it out of the site
        problems.append(('error', f'not processed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}); page left out'))
        Path(dst).unlink(missing_ok=True)
    problems.append(('time', f'{time.time()-t0:.1f} s'))
    return str(src), problems

def process_nbs(nbs: Path, proc: Path, jobs: int, skip_flags: list[str]) -> list[tuple[str, str, str]]:
    "Copy `nbs` into a fresh `proc` folder, processing the notebooks; return the problems as (file, level, message)."
    from nbdev.doclinks import nbglob
    from nbdev.serve import _proc_file
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp
    shutil.rmtree(proc, ignore_errors=True); proc.mkdir(parents=True)
    files = list(nbglob(nbs, func=Path, file_glob='', file_re='', skip_folder_re=r'^[_.]|^results$'))   # not the committed results
    files += [nbs/f for f in ('_quarto.yml', '_brand.yml') if (nbs/f).exists()]
    items = [r for r in (_proc_file(f, proc, nbs) for f in files) if r]   # copies the other files itself
    todo = [(str(s), str(d), tuple(skip_flags)) for s, d, _ in items]
    env = {k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}
    os.environ.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')   # workers inherit it: keep the 2 cores for 2 workers
    # the workers need `_proc_one` from an importable module: IPython's shell replaces `sys.modules['__main__']`
    sys.path.insert(0, str(Path(__file__).parent))
    import build_docs
    try:
        if jobs <= 1 or len(todo) <= 1: res = [_proc_one(t) for t in todo]
        else:
            with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=mp.get_context('spawn')) as ex:
                res = list(ex.map(build_docs._proc_one, sorted(todo, key=lambda t: -Path(t[0]).stat().st_size)))
    finally:
        for k, v in env.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    return [(str(Path(s).relative_to(nbs)), lvl, msg) for s, ps in res for lvl, msg in ps]

# ---------------------------------------------------------------- fixing _proc

def _front(nb: dict) -> dict:
    "The YAML front matter nbdev writes into a processed notebook's first (raw) cell."
    import yaml
    if not nb.get('cells') or nb['cells'][0]['cell_type'] != 'raw': return {}
    src = ''.join(nb['cells'][0]['source'])
    m = re.match(r'\s*---\n(.*?)\n---', src, re.S)
    return (yaml.safe_load(m.group(1)) or {}) if m else {}

def _link_fix(text: str, prefix: str, renames: dict[str, str], here: PurePosixPath) -> str:
    "Make `doc_host/doc_baseurl/` links relative (`prefix`), and point links to renamed notebooks at their new name."
    text = text.replace(_SITE, prefix)
    def sub(m):
        target, tail = m.group(2), m.group(3) or ''
        p = PurePosixPath(os.path.normpath(str(here/target))) if not target.startswith('/') else PurePosixPath(target.lstrip('/'))
        new = renames.get(str(p))
        if new is None: return m.group(0)
        return m.group(1) + os.path.relpath(new, here).replace(os.sep, '/') + tail + m.group(4)
    return re.sub(r'(\]\()([^)\s#:]+\.ipynb)(#[^)\s]*)?(\))', sub, text)

def fix_proc(proc: Path, site_url: str, problems: list) -> dict[str, str]:
    "Rename notebooks to their `output-file`, make doc links relative, tidy the sidebar. Return the renames."
    import yaml
    nbs = sorted(p for p in proc.rglob('*.ipynb'))
    renames = {}
    for p in nbs:
        of = _front(json.loads(p.read_text(encoding='utf-8'))).get('output-file')
        if of and Path(of).stem != p.stem:
            new = p.with_name(Path(of).stem + '.ipynb')
            if new.exists() or str(new.relative_to(proc)) in renames.values():
                problems.append((str(p.relative_to(proc)), 'error', f'output-file {of} clashes with another page')); continue
            renames[p.relative_to(proc).as_posix()] = new.relative_to(proc).as_posix()
    for old, new in renames.items(): (proc/old).rename(proc/new)
    base = site_url.rstrip('/') + '/'
    for p in proc.rglob('*.ipynb'):
        rel = PurePosixPath(p.relative_to(proc).as_posix())
        prefix = '../' * (len(rel.parts) - 1)
        text = p.read_text(encoding='utf-8').replace(base, _SITE)
        nb = json.loads(text)
        if nb['cells'] and nb['cells'][0]['cell_type'] == 'raw':   # the file has its output name now
            nb['cells'][0]['source'] = re.sub(r'(?m)^output-file:.*\n', '', ''.join(nb['cells'][0]['source']))
        for c in nb['cells']:
            if c['cell_type'] == 'markdown':
                c['source'] = _link_fix(''.join(c['source']), prefix, renames, rel.parent)
            for o in c.get('outputs', []):
                for mime in ('text/markdown', 'text/html'):
                    if mime in o.get('data', {}):
                        o['data'][mime] = _link_fix(''.join(o['data'][mime]), prefix, renames, rel.parent)
        text = json.dumps(nb, ensure_ascii=False, indent=1).replace(_SITE, prefix)
        p.write_text(text, encoding='utf-8')
    sb = proc/'sidebar.yml'
    if sb.exists():
        d = yaml.safe_load(sb.read_text()) or {}
        def walk(items):
            out = []
            for it in items:
                if isinstance(it, dict) and 'contents' in it:
                    it = {**it, 'section': SECTION_TITLES.get(it.get('section'), it.get('section')), 'contents': walk(it['contents'])}
                    if it['contents']: out.append(it)
                elif isinstance(it, str):
                    it = renames.get(it, it)
                    if (proc/it).exists(): out.append(it)
                else: out.append(it)
            return out
        contents = walk(d.get('website', {}).get('sidebar', {}).get('contents', []))
        order = {SECTION_TITLES.get(k, k): i for i, k in enumerate(SECTION_ORDER)}
        key = lambda it: (-1 if isinstance(it, str) and PurePosixPath(it).stem == 'index' else order.get(it.get('section'), 99) if isinstance(it, dict) else 50)
        d.setdefault('website', {}).setdefault('sidebar', {})['contents'] = sorted(contents, key=key)
        sb.write_text(yaml.dump(d, sort_keys=False, allow_unicode=True))
    return renames

# ---------------------------------------------------------------- rendering

def katex_source(out: Path, cache: Path, version: str) -> Path | None:
    "A folder with KaTeX's files: the committed site's copy, else `npm pack katex@version` into `cache`."
    for d in (out/'site_libs'/'katex', ROOT/'docs'/'site_libs'/'katex', cache/f'katex-{version}'/'package'/'dist'):
        if all((d/f).is_file() for f in KATEX_FILES) and (d/'fonts').is_dir(): return d
    if not shutil.which('npm'): return None
    dest = cache/f'katex-{version}'; dest.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(['npm', 'pack', f'katex@{version}', '--silent'], cwd=dest, capture_output=True, text=True, timeout=120)
        tgz = dest/r.stdout.strip().splitlines()[-1]
        shutil.unpack_archive(tgz, dest)
    except Exception as e:
        _say(f'could not fetch KaTeX with npm: {e}'); return None
    return dest/'package'/'dist'

def install_katex(site: Path, src: Path, cdn: str) -> int:
    "Copy KaTeX (js, css, auto-render, woff2 fonts) into `site/site_libs/katex` and point every page at it."
    dst = site/'site_libs'/'katex'
    if src.resolve() != dst.resolve():
        shutil.rmtree(dst, ignore_errors=True); (dst/'contrib').mkdir(parents=True); (dst/'fonts').mkdir()
        for f in KATEX_FILES: shutil.copy2(src/f, dst/f)
        for f in sorted((src/'fonts').glob('*.woff2')): shutil.copy2(f, dst/'fonts'/f.name)
        lic = next((p for p in (src/'LICENSE', src.parent/'LICENSE') if p.is_file()), None)
        if lic: shutil.copy2(lic, dst/'LICENSE')
        css = (dst/'katex.min.css').read_text(encoding='utf-8')   # only the woff2 fonts are shipped: drop the rest
        (dst/'katex.min.css').write_text(re.sub(r',url\(fonts/[^)]+\.(?:woff|ttf)\) format\("(?:woff|truetype)"\)', '', css), encoding='utf-8')
    n = 0
    for page in site.rglob('*.html'):
        t = page.read_text(encoding='utf-8')
        if cdn in t:
            off = '../' * (len(page.relative_to(site).parts) - 1)
            page.write_text(t.replace(cdn, f'{off}site_libs/katex'), encoding='utf-8'); n += 1
    return n

def render_smalldocs(proc: Path, out: Path) -> list[str]:
    "Render `proc` with smalldocs into `out`; return its warnings (broken links among them)."
    import yaml
    qy = proc/'_quarto.yml'   # drop what only Quarto uses: the `commonmark` twin of each page and `keep-md`
    q = yaml.safe_load(qy.read_text())
    fmt = q.get('format', {})
    fmt.pop('commonmark', None)
    if isinstance(fmt.get('html'), dict): fmt['html'].pop('keep-md', None)
    qy.write_text(yaml.dump(q, sort_keys=False, allow_unicode=True))
    from smalldocs.config import load
    from smalldocs.site import Site
    site = Site(load(proc), quiet=True)
    site.out = out
    site.build()
    return list(site.warnings)

def render_quarto(proc: Path, out: Path) -> list[str]:
    "Render `proc` with Quarto into `out`."
    subprocess.run(['quarto', 'render', '--no-cache', '--output-dir', str(out)], cwd=proc, check=True)
    return []

def missing_anchors(site: Path) -> list[str]:
    "Links between pages of `site` whose `#anchor` is not on the target page (a link to a private `_x` helper too)."
    from html.parser import HTMLParser
    from urllib.parse import urlsplit, unquote
    class P(HTMLParser):
        def __init__(self): super().__init__(); self.ids, self.links = set(), []
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if a.get('id'): self.ids.add(a['id'])
            if tag == 'a' and a.get('href'): self.links.append(a['href'])
    pages = {}
    for f in site.rglob('*.html'):
        pages[f.resolve()] = P(); pages[f.resolve()].feed(f.read_text(encoding='utf-8'))
    out = []
    for f, p in pages.items():
        for href in p.links:
            u = urlsplit(href)
            if u.scheme or not u.fragment: continue
            t = pages.get((f.parent/unquote(u.path)).resolve() if u.path else f)
            if t is not None and u.fragment not in t.ids:
                out.append(f'{f.relative_to(site.resolve())}: link to {href}: no such anchor (a symbol without `show_doc`, or a private name in backticks?)')
    return sorted(set(out))

def _swap(new: Path, out: Path):
    "Replace the folder `out` by `new`."
    if out.exists():
        old = out.with_name(f'.{out.name}.old')
        shutil.rmtree(old, ignore_errors=True); out.rename(old); new.rename(out); shutil.rmtree(old)
    else: new.rename(out)

def build_site(root: Path, out: Path, jobs: int = 2, renderer: str = 'auto', strict: bool = False, verbose: bool = False) -> int:
    "Build the site of the project at `root` into `out`; return the number of errors (failed doc cells, broken links)."
    t0 = time.time()
    os.chdir(root)
    from nbdev.config import get_config
    from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar
    from nbdev.doclinks import _build_modidx
    cfg = get_config()
    nbs = cfg.nbs_path
    refresh_quarto_yml(); _build_modidx(); nbdev_sidebar.__wrapped__(path=nbs)
    proc = cfg.config_path/'_proc'
    problems = process_nbs(nbs, proc, jobs, cfg.get('tst_flags', '').split())
    t1 = time.time()
    fix_proc(proc, cfg.doc_host + cfg.doc_baseurl, problems)
    if renderer == 'auto': renderer = 'quarto' if shutil.which('quarto') else 'smalldocs'
    out = out.resolve(); out.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f'.{out.name}.new-', dir=out.parent))
    try:
        msgs = (render_quarto if renderer == 'quarto' else render_smalldocs)(proc, new/'site')
        site = new/'site'
        (site/'.nojekyll').touch()
        sm = site/'sitemap.xml'   # its <lastmod> are build times: drop them so a rebuild of the same notebooks is identical
        if sm.exists(): sm.write_text(re.sub(r'\n\s*<lastmod>[^<]*</lastmod>', '', sm.read_text(encoding='utf-8')), encoding='utf-8')
        if renderer == 'smalldocs':
            import smalldocs.layout as L
            ver = re.search(r'katex@([\d.]+)', L.KATEX).group(1)
            src = katex_source(out, cfg.config_path/'.cache', ver)
            if src is None: msgs.append('KaTeX not found (no committed copy, no npm): maths loads from the CDN')
            else: install_katex(site, src, L.KATEX)
        msgs += missing_anchors(site)
        nerr = sum(lvl == 'error' for _, lvl, _ in problems) + sum('broken link' in m or 'no such anchor' in m for m in msgs)
        _swap(site, out)
    finally: shutil.rmtree(new, ignore_errors=True)
    for f, lvl, msg in sorted(problems):
        if lvl not in ('note', 'time') or verbose: _say(f'{lvl}: {f}: {msg}')
    notes = sum(lvl == 'note' for _, lvl, _ in problems)
    if notes and not verbose: _say(f'note: {notes} cell(s) mix imports with other code, so nbdev runs them for the docs (--verbose lists them)')
    for m in msgs: _say(f'warning: {m}')
    pages = len(list(out.rglob('*.html')))
    _say(f'{renderer}: {pages} pages in {os.path.relpath(out, root) if out.is_relative_to(root) else out} '
         f'(processing {t1-t0:.1f} s, total {time.time()-t0:.1f} s); {nerr} error(s)')
    return nerr

# ---------------------------------------------------------------- README.md

def _md_output(o: dict) -> str:
    "One committed output as GitHub Markdown."
    t = o.get('output_type')
    if t == 'stream': return '```\n' + ''.join(o['text']).rstrip('\n') + '\n```'
    if t == 'error': return ''
    d = o.get('data', {})
    j = lambda k: ''.join(d[k]) if isinstance(d[k], list) else d[k]
    if 'text/markdown' in d: return j('text/markdown').strip('\n')
    if 'text/html' in d: return j('text/html').strip('\n')
    if 'image/png' in d or 'image/jpeg' in d or 'image/svg+xml' in d:
        return '*(a figure: see the documentation site)*'   # GitHub renders no data URIs; keep README a single file
    if 'text/plain' in d: return '```\n' + j('text/plain').rstrip('\n') + '\n```'
    return ''

def readme_text(root: Path = ROOT) -> str:
    "README.md's text: `nbs/<readme_nb>` through nbdev's processors (nothing is run), written as GitHub Markdown."
    from nbdev.config import get_config
    from execnb.nbio import read_nb
    cwd = os.getcwd(); os.chdir(root)
    get_config.cache_clear()   # nbdev caches the config of the first folder it was asked from
    try:
        cfg = get_config()
        Filter, _ = _procs(False, set())
        nb = read_nb(cfg.nbs_path/cfg.get('readme_nb', 'index.ipynb'))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore'); Filter()(nb)
    finally: os.chdir(cwd); get_config.cache_clear()
    parts, lang = [], 'python'
    for c in nb.cells:
        src = ''.join(c.source) if isinstance(c.source, list) else (c.source or '')
        if c.cell_type == 'raw':
            m = re.match(r'\s*---\n(.*?)\n---', src, re.S)
            if m:
                import yaml
                fm = yaml.safe_load(m.group(1)) or {}
                if fm.get('title'): parts.append(f"# {fm['title']}")
                if fm.get('description'): parts.append(f"> {fm['description']}")
            continue
        if c.cell_type == 'markdown':
            if src.strip(): parts.append(src.strip('\n'))
            continue
        if c.cell_type != 'code': continue
        opts = dict(re.findall(r'^#\|\s*([\w-]+):\s*(.*)$', src, re.M))
        code = re.sub(r'^#\|.*\n?', '', src, flags=re.M).strip('\n')
        if opts.get('include', '').lower() == 'false': continue
        if code and opts.get('echo', '').lower() != 'false': parts.append(f'```{lang}\n{code}\n```')
        if opts.get('output', '').lower() != 'false':
            parts += [s for s in map(_md_output, c.get('outputs', [])) if s]
    return '\n\n'.join(parts).rstrip() + '\n'

def write_readme(root: Path = ROOT) -> bool:
    "Write README.md; return True when it changed."
    text, f = readme_text(root), root/'README.md'
    old = f.read_text(encoding='utf-8') if f.exists() else None
    if old != text: f.write_text(text, encoding='utf-8')
    return old != text

def readme_stale(root: Path = ROOT) -> bool:
    "Is README.md different from what `nbs/index.ipynb` gives?"
    f = root/'README.md'
    return not f.exists() or f.read_text(encoding='utf-8') != readme_text(root)

# ---------------------------------------------------------------- command line

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', type=Path, help='where the site goes (default: docs/ of the project)')
    p.add_argument('--root', type=Path, default=ROOT, help='the project (with settings.ini); default: this repository')
    p.add_argument('--readme', action='store_true', help='only write README.md from nbs/index.ipynb')
    p.add_argument('--no-readme', action='store_true', help='do not write README.md after the site')
    p.add_argument('--renderer', choices=['auto', 'quarto', 'smalldocs'], default='auto', help='auto: Quarto if installed, else smalldocs')
    p.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1), help='worker processes for the notebooks')
    p.add_argument('--strict', action='store_true', help='exit 1 on a failed doc cell or a broken link')
    p.add_argument('--verbose', '-v', action='store_true', help='also list the cells nbdev runs because they mix imports and code')
    a = p.parse_args(argv)
    root = a.root.resolve()
    if a.readme:
        _say('README.md ' + ('written' if write_readme(root) else 'up to date'))
        return 0
    nerr = build_site(root, (a.out or root/'docs').resolve(), a.jobs, a.renderer, a.strict, a.verbose)
    if not a.no_readme: _say('README.md ' + ('written' if write_readme(root) else 'up to date'))
    return 1 if (a.strict and nerr) else 0

if __name__ == '__main__': sys.exit(main())
