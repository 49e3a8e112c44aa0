"Run the benchmarks: `python -m benchmarks [--full] [--only 1,3] [--threads N] [--gpu]`; writes results/*.json and README.md."
from __future__ import annotations
import argparse, importlib, sys, time, traceback
from . import write_result
from ._report import write_readme

MODULES = ['b1_overhead', 'b2_signals', 'b3_size', 'b4_hardware', 'b5_scaling', 'b6_end_to_end', 'b7_base_cell', 'b8_flower_rounds']

def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__)
    p.add_argument('--full', action='store_true', help='bigger sizes (takes much longer)')
    p.add_argument('--only', default='', help='comma-separated benchmark numbers, e.g. 2,3')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads for the ratio benchmarks (1 is steadier on a shared machine; benchmark 4 tries 1 and 2)')
    p.add_argument('--no-readme', action='store_true', help='do not rewrite benchmarks/README.md')
    p.add_argument('--gpu', action='store_true', help='the GPU readiness check only (make gpu-check); exits 0 without CUDA')
    a = p.parse_args(argv)
    if a.gpu:
        from .gpu_check import main as gpu_main
        return gpu_main()
    only = {int(s) for s in a.only.split(',') if s.strip()}
    failed, t0 = [], time.perf_counter()
    for i, name in enumerate(MODULES, 1):
        if only and i not in only: continue
        mod = importlib.import_module(f'benchmarks.{name}')
        t = time.perf_counter()
        try: res = mod.run(full=a.full, threads=a.threads)
        except Exception:                            # a correctness check (assert) failed, or the benchmark broke
            traceback.print_exc(); failed.append(name); continue
        res = {'goal': mod.GOAL, 'command': 'python -m benchmarks' + (' --full' if a.full else '') + f' --only {i}',
               'full': a.full, 'seconds': round(time.perf_counter() - t, 1), **res}
        write_result(mod.NAME, res)
        print(f"[{i}] {mod.NAME}: {res['summary']} ({res['seconds']:.0f} s)", flush=True)
    if not a.no_readme: write_readme()
    print(f"benchmarks done in {time.perf_counter() - t0:.0f} s" + (f"; FAILED (see the tracebacks): {', '.join(failed)}" if failed else ''))
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
