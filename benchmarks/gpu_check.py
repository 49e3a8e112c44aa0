"""`make gpu-check` (= `python -m benchmarks --gpu`): on a CUDA machine, run the `cuda`-flagged notebook cells, two
rounds of the `paper` preset (ResNet-18, CIFAR-100) and print images/s and the recorder's share; without CUDA say
so and exit 0. Budget: <= 10 minutes on one GPU."""
from __future__ import annotations
import os, shutil, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUDA_NOTEBOOKS = ['nbs/api/00_core.ipynb', 'nbs/api/04_fl.ipynb']

def _cuda_cells() -> bool:
    "Run the notebooks holding `#| cuda` cells with those cells forced on; True if all pass."
    from nbdev.test import test_nb
    skip = ['slow', 'notest', 'flower']
    ok = True
    for nb in CUDA_NOTEBOOKS:
        passed, secs = test_nb(ROOT/nb, skip_flags=skip, force_flags=['cuda'], basepath=ROOT)
        print(f"  {nb}: {'passed' if passed else 'FAILED'} ({secs:.0f} s)", flush=True); ok &= passed
    return ok

def _paper_rounds(rounds: int = 2) -> str:
    "Two rounds of the `paper` preset's no-defense cell on the GPU: images/s of training and the recorder's share."
    from cofedmid.experiment import preset, run_experiment
    from benchmarks import recorder_seconds
    cfg, _ = preset('paper', rounds=rounds, record_every=1, defense='none', targets=[0], device='cuda')
    out = Path(tempfile.mkdtemp(prefix='cofedmid-gpu-'))
    try:
        with recorder_seconds() as spent:
            t = time.perf_counter(); run_experiment(cfg, out/'run', verbose=False); wall = time.perf_counter() - t
    finally: shutil.rmtree(out, ignore_errors=True)
    from cofedmid.data import load_dataset
    n = len(load_dataset(cfg.dataset, cfg.data_dir, progress=False).y_train) - cfg.n_ofl - cfg.n_val
    ips = n*cfg.local_epochs*rounds/max(wall - spent[0], 1e-9)
    return f"paper preset, {rounds} rounds: {wall:.0f} s, {ips:,.0f} training images/s, recorder {spent[0]/wall:.0%} of the time"

def main() -> int:
    import torch
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine; nothing to check (the GPU paths fall back to the CPU)")
        return 0
    t = time.perf_counter()
    print(f"gpu-check on {torch.cuda.get_device_name(0)}", flush=True)
    ok = _cuda_cells()
    print('  ' + _paper_rounds(), flush=True)
    print(f"gpu-check {'passed' if ok else 'FAILED'} in {time.perf_counter() - t:.0f} s")
    return 0 if ok else 1

if __name__ == '__main__': sys.exit(main())
