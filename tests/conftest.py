"Shared pytest set-up: the `--runslow` switch and the location of the offline datasets."
import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False, help='also run tests and notebook cells marked slow')

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than a few seconds (run with --runslow)')
    os.environ.setdefault('IN_TEST', '1')

def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow'): return
    skip = pytest.mark.skip(reason='slow: run with --runslow')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)

@pytest.fixture(scope='session')
def data_dir():
    "The folder with the offline CIFAR archives (`$COFEDMID_DATA`, else ../shared/data beside the repo)."
    d = os.environ.get('COFEDMID_DATA') or ROOT.parent/'shared'/'data'
    if not (Path(d)/'cifar10-jpeg.tar.gz').is_file(): pytest.skip(f'no offline CIFAR archives in {d}')
    return Path(d)

@pytest.fixture(scope='session')
def cifar10_fed(data_dir):
    "The slow tests' CIFAR-10 federation: 10 clients × 500 images, 1,000 OFL, 500 validation; 250 members per client."
    import torch
    from cofedmid.data import load_dataset
    from cofedmid.partition import Federation, CandidatePool
    torch.set_num_threads(2)
    data = load_dataset('cifar10', data_dir, progress=False)
    fed = Federation.split(data.y_train.numpy(), n_clients=10, size=500, n_ofl=1000, n_val=500, seed=0)
    return data, fed, CandidatePool.make(fed, n_per_client=250, n_ofl=1000, seed=0)
