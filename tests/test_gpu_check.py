"`make gpu-check` (`python -m benchmarks --gpu`): exits 0 and says so on a machine without CUDA."
import subprocess, sys
from pathlib import Path
import pytest, torch

ROOT = Path(__file__).resolve().parents[1]

@pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA device is present: the check runs for real (make gpu-check)')
def test_gpu_check_without_cuda():
    r = subprocess.run([sys.executable, '-m', 'benchmarks', '--gpu'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'no CUDA device' in r.stdout
