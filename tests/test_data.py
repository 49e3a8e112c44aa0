"Data module: real CIFAR from the offline archives, the cache, TinyImageNet's layout and every bad-input message."
import io, os, shutil, tarfile, zipfile, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image
from cofedmid.data import (load_dataset, channel_stats, DataError, NORM_STATS, ImageData, _cache_files, _read_tiny,
                           _save_cache)

CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']

@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    "One decoded cache shared by the real-data tests of this module."
    return tmp_path_factory.mktemp('cache')

def _check_real(d: ImageData, name, n_classes, per_class):
    assert d.name == name and d.n_classes == n_classes
    assert d.x_train.shape == (50000, 3, 32, 32) and d.x_test.shape == (10000, 3, 32, 32)
    assert d.x_train.dtype == torch.uint8 and d.y_train.dtype == torch.int64
    assert torch.bincount(d.y_train, minlength=n_classes).tolist() == [per_class[0]]*n_classes
    assert torch.bincount(d.y_test, minlength=n_classes).tolist() == [per_class[1]]*n_classes
    mean, std = channel_stats(d.x_train[::10])
    np.testing.assert_allclose(mean, NORM_STATS[name][0], atol=0.01)   # pixels look like the dataset
    np.testing.assert_allclose(std, NORM_STATS[name][1], atol=0.01)

def test_cifar10_real(data_dir, cache):
    d = load_dataset('cifar10', data_dir=data_dir, cache=cache, progress=False)
    _check_real(d, 'cifar10', 10, (5000, 1000))
    assert d.classes == CIFAR10_CLASSES
    # label order: per-class mean colours that anybody can recognise (sky-blue airplanes/ships, green frogs)
    m = torch.stack([d.x_train[d.y_train == c].float().mean((0, 2, 3)) for c in range(10)])
    assert m[0, 2] > m[0, 0] and m[8, 2] > m[8, 0]   # airplane and ship: blue over red
    assert m[6, 1] > m[6, 2]                           # frog: green over blue

def test_cifar10_cache_round_trip(data_dir, cache):
    import time
    first = load_dataset('cifar10', data_dir=data_dir, cache=cache, progress=False)
    t = time.perf_counter(); again = load_dataset('cifar10', data_dir=data_dir, cache=cache); dt = time.perf_counter() - t
    assert again.source.startswith('cache') and dt < 1.0, (again.source, dt)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    # without a data_dir, the cached copy is found too
    assert load_dataset('cifar10', data_dir=None, cache=cache, download=False).source.startswith('cache')

def test_cifar100_real(data_dir, cache):
    d = load_dataset('cifar100', data_dir=data_dir, cache=cache, progress=False)
    _check_real(d, 'cifar100', 100, (500, 100))
    assert d.classes[0] == 'apple' and d.classes[-1] == 'worm' and d.classes == sorted(d.classes)

def _fake_cifar_tar(path: Path, classes, per_class=(2, 1)):
    "A small archive in the offline CIFAR layout."
    with tarfile.open(path, 'w:gz') as tf:
        for split, n in zip(('train', 'test'), per_class):
            for c in classes:
                for i in range(n):
                    b = io.BytesIO(); Image.new('RGB', (32, 32), (i, 0, 0)).save(b, 'PNG')
                    info = tarfile.TarInfo(f'cifar10-jpeg/{split}/{c}/{i:04d}.png'); info.size = len(b.getvalue())
                    tf.addfile(info, io.BytesIO(b.getvalue()))

def test_bad_inputs(tmp_path, data_dir):
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; choose one of cifar10, cifar100, tinyimagenet"):
        load_dataset('imagenet')
    with pytest.raises(DataError, match='no CIFAR-10 data found in .* and download=False'):
        load_dataset('cifar10', data_dir=tmp_path, cache=tmp_path/'c', download=False)
    with pytest.raises(DataError, match='which is not a directory'):
        load_dataset('cifar10', data_dir=tmp_path/'missing', cache=tmp_path/'c')
    # truncated archive: checksum mismatch; without verification, a read error; both name the fix
    half = tmp_path/'trunc'; half.mkdir()
    src = data_dir/'cifar10-jpeg.tar.gz'
    (half/src.name).write_bytes(src.read_bytes()[:src.stat().st_size//2])
    with pytest.raises(DataError, match='checksum mismatch .* truncated or corrupt'):
        load_dataset('cifar10', data_dir=half, cache=tmp_path/'c')
    with pytest.raises(DataError, match='truncated or corrupt'):
        load_dataset('cifar10', data_dir=half, cache=tmp_path/'c', verify=False, progress=False)
    # a readable archive with the wrong classes or counts
    wrong = tmp_path/'wrong'; wrong.mkdir()
    _fake_cifar_tar(wrong/'cifar10-jpeg.tar.gz', ['a', 'b', 'c'])
    with pytest.raises(DataError, match='found 3 classes, expected 10'):
        load_dataset('cifar10', data_dir=wrong, cache=tmp_path/'c', verify=False, progress=False)
    _fake_cifar_tar(wrong/'cifar10-jpeg.tar.gz', CIFAR10_CLASSES)
    with pytest.raises(DataError, match='wrong number of train images per class'):
        load_dataset('cifar10', data_dir=wrong, cache=tmp_path/'c', verify=False, progress=False)

def test_no_network_message(tmp_path, monkeypatch):
    "Nothing local and the download fails: one message naming COFEDMID_DATA."
    import torchvision
    def offline(*a, **k): raise OSError('network is unreachable')
    monkeypatch.setattr(torchvision.datasets, 'CIFAR10', offline)
    monkeypatch.delenv('COFEDMID_DATA', raising=False)
    with pytest.raises(DataError, match='download failed .* Set COFEDMID_DATA'):
        load_dataset('cifar10', cache=tmp_path)

def test_cache_is_atomic_and_self_healing(tmp_path, monkeypatch):
    "A half-written temp file is never loaded; a corrupt cache file is rebuilt from the source."
    from cofedmid import data
    monkeypatch.setitem(data._SPECS['cifar10'], 'per_class', (2, 1))   # a small stand-in archive
    d = tmp_path/'src'; d.mkdir(); _fake_cifar_tar(d/'cifar10-jpeg.tar.gz', CIFAR10_CLASSES, (2, 1))
    c = tmp_path/'cache'
    f = _cache_files('cifar10', 'archive', c)[0]
    (f.parent/f'.{f.name}.abc.tmp').write_bytes(b'half a file')       # what a killed writer leaves
    a = load_dataset('cifar10', data_dir=d, cache=c, verify=False, progress=False)
    assert a.source.startswith('archive') and f.is_file()
    f.write_bytes(f.read_bytes()[:1000])                                 # damage the cache
    with pytest.warns(UserWarning, match='ignoring the cache file'):
        b = load_dataset('cifar10', data_dir=d, cache=c, verify=False, progress=False)
    assert b.source.startswith('archive') and torch.equal(a.x_train, b.x_train)
    assert load_dataset('cifar10', data_dir=d, cache=c).source.startswith('cache')

def _fake_tiny(root: Path, wnids=('n01', 'n02'), n_train=3, n_val=2):
    "A tiny TinyImageNet-200 folder in the standard layout."
    for k, w in enumerate(wnids):
        (root/'train'/w/'images').mkdir(parents=True)
        for i in range(n_train): Image.new('RGB', (64, 64), (k*50, i, 0)).save(root/'train'/w/'images'/f'{w}_{i}.JPEG')
    (root/'val'/'images').mkdir(parents=True)
    lines = []
    for k, w in enumerate(wnids):
        for i in range(n_val):
            fn = f'val_{k}_{i}.JPEG'; Image.new('L', (64, 64), 100).save(root/'val'/'images'/fn)
            lines.append(f'{fn}\t{w}\t0\t0\t63\t63')
    (root/'val'/'val_annotations.txt').write_text('\n'.join(lines))
    (root/'wnids.txt').write_text('\n'.join(wnids))
    (root/'words.txt').write_text('\n'.join(f'{w}\tthing {w}, other name' for w in wnids))

def test_tinyimagenet_layout(tmp_path):
    root = tmp_path/'tiny-imagenet-200'; _fake_tiny(root)
    (train, test), classes = _read_tiny(root, progress=False)
    assert classes == ['thing n01', 'thing n02']
    assert train[0].shape == (6, 64, 64, 3) and train[0].dtype == np.uint8 and train[1].tolist() == [0, 0, 0, 1, 1, 1]
    assert test[0].shape == (4, 64, 64, 3) and test[1].tolist() == [0, 0, 1, 1]   # grayscale val images become RGB
    assert (np.abs(train[0][3:, ..., 0].astype(int) - 50) <= 3).all()              # images follow their class (JPEG: ±3)
    # through load_dataset, the full-size checks apply: 2 classes is not TinyImageNet-200
    with pytest.raises(DataError, match='TinyImageNet-200: found 2 classes, expected 200'):
        load_dataset('tinyimagenet', data_dir=tmp_path, cache=tmp_path/'c', progress=False)
    # the zip archive is extracted into the cache and read the same way
    zdir = tmp_path/'z'; zdir.mkdir()
    with zipfile.ZipFile(zdir/'tiny-imagenet-200.zip', 'w') as z:
        for p in root.rglob('*'):
            if p.is_file(): z.write(p, p.relative_to(tmp_path))
    with pytest.raises(DataError, match='found 2 classes, expected 200'):
        load_dataset('tinyimagenet', data_dir=zdir, cache=tmp_path/'c2', progress=False)
    assert (tmp_path/'c2'/'tiny-imagenet-200'/'wnids.txt').is_file()

def test_tinyimagenet_not_a_folder(tmp_path):
    (tmp_path/'tiny-imagenet-200').mkdir()
    with pytest.raises(DataError, match='is not a TinyImageNet-200 folder'):
        load_dataset('tinyimagenet', data_dir=tmp_path, cache=tmp_path/'c', progress=False)
