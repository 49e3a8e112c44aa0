"Packaging for cofedmid: metadata comes from settings.ini (nbdev 2 layout)."
from configparser import ConfigParser
import setuptools

assert setuptools.__version__ >= '36.2'
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = 'version description keywords author author_email'.split()
missing = [o for o in expected if o not in cfg]
if missing: raise ValueError(f'settings.ini is missing {missing}')

statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()
requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
flower_requirements = cfg.get('flower_requirements', '').split()   # the Flower engine: pip install "cofedmid[flower]"
min_python = cfg['min_python']
# The book's committed results (nbs/tutorials/results) ship as package data `cofedmid/results`, read by
# `cofedmid.core.book_results`: each folder's summaries, the one-run folders' tables, and each cell's JSON files and
# logs.csv -- not the per-candidate scores, plots, or the sweeps' per-target tables (tens of MB; `cofedmid report`
# remakes them from a clone).
book = {'cofedmid.results': 'nbs/tutorials/results'}
book_files = ['README.md', '*/summary.csv', '*/strongest.csv', 'base/*.csv', '*/*.json', '*/cells/*/*.json',
              '*/cells/*/logs.csv', '*/cells/*/strongest.csv']
lic_expr = {'apache2': 'Apache-2.0', 'mit': 'MIT', 'gpl3': 'GPL-3.0-only', 'bsd3': 'BSD-3-Clause'}[cfg['license']]

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    url=cfg['git_url'],
    project_urls={'Documentation': cfg['doc_host'] + cfg['doc_baseurl'], 'Source': cfg['git_url'],
                  'Issues': cfg['git_url'] + '/issues'},
    author=cfg['author'], author_email=cfg['author_email'],
    license=lic_expr,
    license_files=['LICENSE'],
    keywords=cfg['keywords'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()] +
                ['Programming Language :: Python :: ' + o for o in py_versions[py_versions.index(min_python):]],
    packages=setuptools.find_packages(include=['cofedmid', 'cofedmid.*']) + list(book),
    package_dir=book,
    package_data={'cofedmid.results': book_files},
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'flower': flower_requirements},
    dependency_links=cfg.get('dep_links', '').split(),
    python_requires='>=' + min_python,
    zip_safe=False,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d'],
    },
)
