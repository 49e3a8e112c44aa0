"""The documentation site and README.md: build the site from a scratch copy of the notebooks (the git tree is not
touched), check that every page and internal link resolves, and open pages in headless Chromium.

The copy gets one extra chapter, `nbs/tutorials/zz_render_check.ipynb`, with what every page type must render: maths
(KaTeX served from the site), a figure, a table, a doc link to the API, highlighted code."""
import base64, html.parser, io, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'scripts'))
import build_docs  # noqa: E402

CHECK_NB = 'tutorials/zz_render_check.ipynb'
CHROMIUM = next((shutil.which(b) for b in ('chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable') if shutil.which(b)), None)

def _png() -> str:
    "A small plot as base64 PNG, as a notebook stores a matplotlib figure."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.plot([0, 1, 2], [0, 1, 4], 'o-'); buf = io.BytesIO(); fig.savefig(buf, format='png'); plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()

def _cell(kind, src, outputs=None):
    c = {'cell_type': kind, 'metadata': {}, 'source': src}
    if kind == 'code': c.update(execution_count=None, outputs=outputs or [])
    return c

def _check_nb() -> dict:
    table = '<table class="dataframe"><thead><tr><th>defense</th><th>auc</th></tr></thead><tbody><tr><td>none</td><td>0.91</td></tr></tbody></table>'
    cells = [_cell('markdown', '# Render check\n\n> A chapter that uses what pages must render.'),
             _cell('markdown', 'FedAvg averages the uploads, $\\theta^{t+1} = \\sum_k w_k \\theta_k^t$, and\n\n'
                               '$$\\mathrm{AUC} = \\Pr[s(x_{\\mathrm{in}}) > s(x_{\\mathrm{out}})]$$\n\nSee `seed_everything`.'),
             _cell('code', 'import numpy as np\nx = np.arange(3)\nx.sum()', [{'data': {'text/plain': ['3']}, 'execution_count': None, 'metadata': {}, 'output_type': 'execute_result'}]),
             _cell('code', 'plot()', [{'data': {'image/png': _png(), 'text/plain': ['<Figure>']}, 'metadata': {}, 'output_type': 'display_data'}]),
             _cell('code', 'df', [{'data': {'text/html': [table], 'text/plain': ['df']}, 'execution_count': None, 'metadata': {}, 'output_type': 'execute_result'}])]
    return {'cells': cells, 'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}, 'nbformat': 4, 'nbformat_minor': 5}

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "Build the site of a scratch copy of the project (plus the render-check chapter) into `<tmp>/site`."
    tmp = tmp_path_factory.mktemp('docs')
    for f in ('settings.ini', 'setup.py', 'pyproject.toml'): shutil.copy2(ROOT/f, tmp/f)
    ign = shutil.ignore_patterns('.ipynb_checkpoints', '__pycache__', '_proc', 'results')   # the site shows no result files
    for d in ('nbs', 'cofedmid'): shutil.copytree(ROOT/d, tmp/d, ignore=ign)
    (tmp/'nbs'/CHECK_NB).parent.mkdir(exist_ok=True)
    (tmp/'nbs'/CHECK_NB).write_text(json.dumps(_check_nb(), indent=1))
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'build_docs.py'), '--root', str(tmp), '--out', str(tmp/'site'),
                        '--no-readme', '--strict'], capture_output=True, text=True, timeout=900)
    print(r.stdout, r.stderr, sep='\n')
    assert r.returncode == 0, f'the docs build failed:\n{r.stderr[-3000:]}'
    return tmp

class _Links(html.parser.HTMLParser):
    "The ids, links and title of one HTML page."
    def __init__(self):
        super().__init__(); self.ids, self.links, self.title, self._t = set(), [], '', False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        for k in ('href', 'src'):
            if a.get(k) and not (tag == 'link' and a.get('rel') in ('canonical', 'alternate')): self.links.append(a[k])
        self._t = tag == 'title'
    def handle_data(self, d):
        if self._t: self.title += d
    def handle_endtag(self, tag): self._t = False

def _parse(p: Path) -> _Links:
    x = _Links(); x.feed(p.read_text(encoding='utf-8')); return x

def _local(href: str) -> bool:
    return bool(href) and not urlsplit(href).scheme and not href.startswith(('//', 'data:', 'mailto:', 'javascript:'))

def test_every_page_and_link(site):
    """One page per notebook; every local link, script, stylesheet and font points at a file, every anchor at an id
    (a doc link to a symbol without a `show_doc` on its page fails here, a private `_x` in backticks too)."""
    out, nbs = site/'site', site/'nbs'
    pages = {p: _parse(p) for p in out.rglob('*.html')}
    notebooks = [p for p in nbs.rglob('*.ipynb') if not any(q.startswith(('.', '_')) for q in p.relative_to(nbs).parts)]
    assert len(pages) == len(notebooks), (sorted(str(p.relative_to(out)) for p in pages), notebooks)
    assert (out/'index.html').is_file() and (out/'tutorials'/'zz_render_check.html').is_file()
    for nb in (nbs/'api').glob('*.ipynb'):                       # api/03_partition.ipynb -> api/partition.html
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', nb.read_text(), re.M)
        if m: assert (out/'api'/f'{m.group(1)}.html').is_file(), f'no page for {nb.name}'
    broken = []
    for p, x in pages.items():
        assert x.title.strip() and 'cofedmid' in x.title, (p, x.title)
        for href in x.links:
            if not _local(href): continue
            u = urlsplit(href)
            target = (p.parent/unquote(u.path)).resolve() if u.path else p
            if not target.exists(): broken.append(f'{p.relative_to(out)} -> {href}'); continue
            # anchors too: a link to a private helper (`_x` in backticks) has no documentation to land on, so it fails
            if u.fragment and target.suffix == '.html':
                if u.fragment not in (pages.get(target) or _parse(target)).ids: broken.append(f'{p.relative_to(out)} -> {href} (no such anchor)')
    for css in out.rglob('*.css'):                                # fonts and images of the stylesheets (KaTeX's fonts)
        for ref in re.findall(r'url\(["\']?([^)"\']+)', css.read_text(encoding='utf-8')):
            if _local(ref) and not (css.parent/urlsplit(ref).path).exists(): broken.append(f'{css.relative_to(out)} -> {ref}')
    assert not broken, 'broken links:\n' + '\n'.join(broken)
    assert not any('cdn.jsdelivr.net/npm/katex' in (out/p).read_text() for p in ('tutorials/zz_render_check.html',)), 'KaTeX from the CDN'

def test_doc_links_relative(site):
    "nbdev's absolute doc links became page-relative, and every API symbol's page exists in the site."
    out = site/'site'
    page = (out/'tutorials'/'zz_render_check.html').read_text()
    assert 'href="../api/core.html#seed_everything"' in page
    for p in out.rglob('*.html'): assert 'cofedmid.github.io' not in p.read_text(), p
    sys.path.insert(0, str(site))
    from importlib import util
    spec = util.spec_from_file_location('_modidx_copy', site/'cofedmid'/'_modidx.py'); m = util.module_from_spec(spec); spec.loader.exec_module(m)
    missing = {url.split('#')[0] for mod in m.d['syms'].values() for url, _ in mod.values() if not (out/url.split('#')[0]).is_file()}
    assert not missing, f'_modidx.py links to pages the site lacks: {sorted(missing)}'

def test_sidebar(site):
    "The sidebar lists the home page, the chapters and every API page (by title)."
    x = (site/'site'/'index.html').read_text()
    side = x[x.index('id="quarto-sidebar"'):x.index('id="quarto-margin-sidebar"')]
    assert 'API reference' in side and 'Tutorials' in side and 'Render check' in side
    for name in ('core', 'data', 'fl'): assert f'href="api/{name}.html"' in side, name

def _chromium(args: list[str], url: str, tmp: Path) -> subprocess.CompletedProcess:
    prof = tempfile.mkdtemp(dir=tmp, prefix='chromium-')
    cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', f'--user-data-dir={prof}', '--hide-scrollbars', '--virtual-time-budget=5000', *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

@pytest.mark.skipif(CHROMIUM is None, reason='headless Chromium is not installed (apt-get install -y chromium)')
def test_pages_in_chromium(site, tmp_path):
    "Home page, an API page and chapters, opened from file:// in Chromium: title, sidebar, content, maths, no blank screen."
    from PIL import Image, ImageStat
    out = site/'site'
    chapters = sorted(p for p in (out/'tutorials').glob('*.html'))
    for rel in ['index.html', 'api/fl.html', *(str(p.relative_to(out)) for p in chapters)]:
        r = _chromium(['--dump-dom'], (out/rel).as_uri(), tmp_path)
        dom = r.stdout
        assert r.returncode == 0 and '</html>' in dom, (rel, r.stderr[-2000:])
        assert 'cofedmid' in re.search(r'<title>(.*?)</title>', dom, re.S).group(1), rel
        assert 'API reference' in dom and 'sidebar-item' in dom, f'{rel}: no sidebar'
        text = re.sub(r'<[^>]+>', ' ', dom[dom.index('id="quarto-document-content"'):])
        assert len(text.split()) > 40, f'{rel}: almost no content'
        assert 'class="sourceCode' in dom or 'class="code' in dom or '<pre' in dom, f'{rel}: no code block'
    dom = _chromium(['--dump-dom'], (out/'tutorials'/'zz_render_check.html').as_uri(), tmp_path).stdout
    assert dom.count('class="katex"') >= 1 and 'katex-display' in dom, 'KaTeX did not render the maths (local site_libs/katex)'
    assert '<img src="data:image/png' in dom and '<table' in dom
    for rel in ('index.html', 'api/fl.html'):
        shot = tmp_path/(rel.replace('/', '_') + '.png')
        _chromium([f'--screenshot={shot}', '--window-size=1280,900'], (out/rel).as_uri(), tmp_path)
        im = Image.open(shot).convert('L')
        st = ImageStat.Stat(im)
        dark = sum(im.histogram()[:128]) / (im.width * im.height)   # text, code and the navbar
        assert st.stddev[0] > 20 and 0.01 < dark < 0.6, f'{rel}: the screenshot looks blank or broken (std {st.stddev[0]:.0f}, dark {dark:.3f})'

BODY_PX = 712   # the text column of a page: smalldocs' 760 px body less its padding
BOOK = ('tutorials', 'explanations')

def _book_pages(out: Path) -> list[Path]:
    return [out/'index.html'] + sorted(p for d in BOOK for p in (out/d).glob('*.html') if p.stem != 'zz_render_check')

class _Tables(html.parser.HTMLParser):
    "The tables of a page, each as rows of (tag, text, colspan), and the texts of its h2/h3 headings."
    def __init__(self):
        super().__init__(); self.tables, self.heads, self._cell, self._head, self._depth = [], [], None, None, 0
    def handle_starttag(self, tag, attrs):
        if tag == 'table': self.tables.append([]); self._depth += 1
        elif tag == 'tr' and self._depth: self.tables[-1].append([])
        elif tag in ('td', 'th') and self._depth: self._cell = [tag, '', int(dict(attrs).get('colspan') or 1)]
        elif tag in ('h2', 'h3'): self._head = ''
    def handle_endtag(self, tag):
        if tag == 'table': self._depth -= 1
        elif tag in ('td', 'th') and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(tuple(self._cell)); self._cell = None
        elif tag in ('h2', 'h3') and self._head is not None: self.heads.append(self._head.strip()); self._head = None
    def handle_data(self, d):
        if self._cell is not None: self._cell[1] += d
        if self._head is not None: self._head += d

def table_width(rows: list, char_px: float = 7.6, pad_px: float = 12.8) -> tuple[int, float]:
    """Columns and estimated narrowest width (px) of a table: per column its longest word (headers bold), at the site's
    0.85 rem table font, plus the cells' 0.4 rem padding: an estimate (`test_tables_in_chromium` measures the real
    layout of three pages; with 0.6 rem padding it gave 1,157 px for chapter 7's old 13-column table, Chromium 1,193)."""
    n = max((sum(c[2] for c in r) for r in rows), default=0); w = [0.0] * n
    for r in rows:
        i = 0
        for tag, text, span in r:
            if span == 1 and i < n:
                w[i] = max(w[i], max((len(x) for x in text.split()), default=0) * char_px * (1.1 if tag == 'th' else 1) + pad_px)
            i += span
    return n, sum(w)

def test_table_width_estimate():
    "The estimate tells a 13-column table of attack names from a narrow one."
    wide = [[('th', 'attack', 1)] + [('th', a, 1) for a in ['grad_cosine'] * 12], [('th', 'no defense', 1)] + [('td', '0.675', 1)] * 12]
    assert table_width(wide)[1] > BODY_PX and table_width([r[:5] for r in wide])[1] < BODY_PX

def test_tables_fit_the_page(site):
    "Every table on the home page, the chapters and the explanations fits the text column: no column cut off or hidden."
    wide = []
    for p in _book_pages(site/'site'):
        x = _Tables(); x.feed(p.read_text(encoding='utf-8'))
        for k, t in enumerate(x.tables):
            n, w = table_width(t)
            if w > BODY_PX or n > 10: wide.append(f'{p.relative_to(site/"site")}: table {k + 1} has {n} columns, at least {w:.0f} px')
    assert not wide, 'tables wider than the page (fewer columns, or headers that can wrap):\n' + '\n'.join(wide)

def test_headings_once(site):
    "No page repeats a section heading (the table of contents would list it twice)."
    for p in _book_pages(site/'site'):
        x = _Tables(); x.feed(p.read_text(encoding='utf-8'))
        twice = {h for h in x.heads if x.heads.count(h) > 1 and h != 'On this page'}
        assert not twice, f'{p.name}: headings repeated: {twice}'

def test_colab_links(site):
    "Every rendered chapter links to itself on Colab (nbdev drops the rest of the title cell, so the badge has its own cell)."
    for p in sorted((site/'nbs'/'tutorials').glob('*.ipynb')):
        if p.stem == 'zz_render_check': continue
        m = re.search(r'^#\|\s*output-file:\s*(\S+)', p.read_text(), re.M)
        page = site/'site'/'tutorials'/(Path(m.group(1)).stem + '.html' if m else re.sub(r'^\d+[a-z]?_', '', p.stem) + '.html')
        assert f'href="https://colab.research.google.com/github/cofedmid/cofedmid/blob/main/nbs/tutorials/{p.name}"' in page.read_text(), page.name

def _md(nb: Path) -> list[str]:
    return [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown']

def test_chapters_end_with_summary_exercises_next():
    "Every chapter has a Summary, Exercises and, in its last cell, a 'Next' link to a page that exists."
    for nb in sorted((ROOT/'nbs'/'tutorials').glob('*.ipynb')):
        text = '\n'.join(_md(nb))
        assert re.search(r'^## Summary', text, re.M) and re.search(r'^## Exercises', text, re.M), nb.name
        m = re.search(r'Next:.*?\]\(([^)#]+\.ipynb)', _md(nb)[-1], re.S)
        assert m and (nb.parent/m.group(1)).resolve().is_file(), f'{nb.name}: no Next link (to an existing notebook) in its last cell'

def test_no_files_outside_the_repository():
    "Notebooks, README and the benchmark notes cite no file the repository lacks (notes kept outside it: the paper, calibration and style notes)."
    files = [p for p in (ROOT/'nbs').rglob('*') if p.suffix in ('.ipynb', '.md', '.yml') and '.ipynb_checkpoints' not in p.parts]
    bad = [f'{p.relative_to(ROOT)}: {m}' for p in files + [ROOT/'README.md', ROOT/'benchmarks'/'NOTES.md']   # NOTES.md is shown on the Performance page
           for m in re.findall(r'shared/\S*|PAPER\.md|CALIBRATION\.md|STYLE\.md', p.read_text(encoding='utf-8'))]
    assert not bad, '\n'.join(bad)

MEASURE = """<!doctype html><html><body><iframe id="f" style="width:1280px;height:900px"></iframe><script>
const f = document.getElementById('f');
f.onload = () => { const d = f.contentDocument, main = d.querySelector('main.content');
  const res = {right: main.getBoundingClientRect().right, tables: [...main.querySelectorAll('table')].map(t => t.getBoundingClientRect().right)};
  const o = document.createElement('pre'); o.id = 'result'; o.textContent = JSON.stringify(res); document.body.appendChild(o); };
f.src = new URLSearchParams(location.search).get('page');
</script></body></html>"""

@pytest.mark.skipif(CHROMIUM is None, reason='headless Chromium is not installed (apt-get install -y chromium)')
def test_tables_in_chromium(site, tmp_path):
    """Chromium lays out chapter 7, the Performance page and chapter 6 at 1280 px: every table ends inside the text
    column. Full-page screenshots of the first two are left in `tmp_path` to look at."""
    out = site/'site'
    (out/'_measure.html').write_text(MEASURE)
    try:
        for rel in ('tutorials/reproducing_the_paper.html', 'explanations/performance.html', 'tutorials/coalition_explorer.html'):
            r = _chromium(['--allow-file-access-from-files', '--window-size=1400,1000', '--dump-dom'], (out/'_measure.html').as_uri() + f'?page={rel}', tmp_path)
            m = re.search(r'<pre id="result">(.*?)</pre>', r.stdout)
            assert m, (rel, r.stderr[-2000:])
            res = json.loads(m.group(1))
            assert res['tables'], f'{rel}: no tables found'
            cut = [round(x - res['right']) for x in res['tables'] if x > res['right'] + 1]
            assert not cut, f'{rel}: {len(cut)} table(s) run past the text column by {cut} px'
    finally: (out/'_measure.html').unlink()
    for rel in ('tutorials/reproducing_the_paper.html', 'explanations/performance.html'):
        shot = tmp_path/(Path(rel).stem + '.png')
        _chromium([f'--screenshot={shot}', '--window-size=1280,9000'], (out/rel).as_uri(), tmp_path)
        assert shot.is_file() and shot.stat().st_size > 10_000, rel
    print('screenshots in', tmp_path)

def test_readme_up_to_date():
    "README.md is what nbs/index.ipynb gives (check_sync.py runs the same comparison in CI)."
    assert not build_docs.readme_stale(ROOT), f'README.md is out of date: run `{build_docs.README_CMD}`'

def test_readme_detects_changes(tmp_path):
    "A changed index notebook makes README.md stale; writing it again makes it current."
    shutil.copy2(ROOT/'settings.ini', tmp_path/'settings.ini'); shutil.copy2(ROOT/'README.md', tmp_path/'README.md')
    (tmp_path/'nbs').mkdir(); nb = json.loads((ROOT/'nbs'/'index.ipynb').read_text())
    nb['cells'].append(_cell('markdown', '## One more section\n\nText with `code`.'))
    (tmp_path/'nbs'/'index.ipynb').write_text(json.dumps(nb))
    assert build_docs.readme_stale(tmp_path)
    assert build_docs.write_readme(tmp_path) and not build_docs.readme_stale(tmp_path)
    text = (tmp_path/'README.md').read_text()
    assert text.startswith('# cofedmid\n\n> ') and text.endswith('## One more section\n\nText with `code`.\n')
    assert '#|' not in text and '<td>loss_series</td>' in text   # no cell directives; committed outputs are shown
