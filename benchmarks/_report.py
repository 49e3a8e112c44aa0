"Write benchmarks/README.md from the latest results/*.json."
from __future__ import annotations
import json
from pathlib import Path

HERE = Path(__file__).parent
HEAD = """# Benchmarks

`make bench` (= `.venv/bin/python -m benchmarks`) runs eight benchmarks, each against the usual way of doing the
same thing, in the same process run; `--full` uses bigger sizes, `--only 2,3` runs some, `--threads N` sets torch
threads for the ratio benchmarks (default 1). Each writes `results/<name>.json` (all raw timings, the machine, the
command) and prints one line; this file is rewritten from those JSON files at the end of a run. GPU paths run when
CUDA is present and are reported as skipped otherwise. No benchmark is part of the unit tests; the correctness
checks inside them (equal signals, etc.) are assertions, and `python -m benchmarks` exits non-zero if one fails.

**Noise.** These figures come from a 2-core machine shared with other jobs (load average in the table). Ratios are
therefore measured in one run, with the two sides interleaved and repeated, and medians reported; with one torch
thread the ratio uses *process CPU time*, which counts the work done and not the waits for a core (wall times are in
the JSON too). Absolute times on a loaded machine are pessimistic.
"""

def _fmt(r: dict) -> str:
    met = {True: 'met', False: '**not met**', None: 'skipped'}[r.get('goal_met')]
    return f"| {r['benchmark']} | {r['goal']} | {r['summary']} | {met} | `{r['command']}` | {r['machine']['load_avg_1min']} | {r['when']} |"

def write_readme(extra: str|None = None):
    rows = [json.loads(p.read_text()) for p in sorted((HERE/'results').glob('*.json'))]
    m = rows[0]['machine'] if rows else {}
    body = [HEAD, "## Latest figures\n",
            f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores ({m.get('simd', '?')}), Python {m.get('python', '?')}, "
            f"torch {m.get('torch', '?')}, GPU: {m.get('cuda') or 'none'}.\n",
            "| benchmark | goal | result | goal met? | command | load avg | when |", "|---|---|---|---|---|---|---|",
            *[_fmt(r) for r in rows], ""]
    notes = HERE/'NOTES.md'
    if notes.exists(): body.append(notes.read_text())
    (HERE/'README.md').write_text('\n'.join(body))

if __name__ == '__main__': write_readme()
