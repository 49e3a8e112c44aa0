"""Module 3 hardening table (issue 17): noise scale x mask kind -> plain-upload AUC, repaired-view AUC,
coalition-identification precision/recall and test accuracy, on CIFAR-10 (the `quick` protocol: 10 clients x 400
images cut to 300 images, 4 rounds and E = 2 so that a cell fits a heavily shared 2-core CPU; `half` coalition, all
CoFedMID modules, adaptive server views recorded).

Run (one cell at a time, resumable; ~5 min per cell on a 2-core CPU shared with two other jobs):

    COFEDMID_DATA=DATA_FOLDER nohup python scripts/hardening_table.py OUT_DIR > OUT_DIR.log 2>&1 &
    python scripts/hardening_table.py OUT_DIR --table      # the markdown table of the finished cells
"""
import json, math, os, sys
from pathlib import Path

CELLS = {                                                   # name: CoFedMID arguments (None: no defense)
    'none': None,
    'absolute 0.1, tail': dict(noise_scale='absolute', sigma=0.1, mask='tail'),
    'median 3, tail': dict(noise_scale='median', sigma=3.0, mask='tail'),
    'median 3, random': dict(noise_scale='median', sigma=3.0, mask='random'),
    'absolute 0.1, random': dict(noise_scale='absolute', sigma=0.1, mask='random'),
    'median 10, random': dict(noise_scale='median', sigma=10.0, mask='random'),
    'member 3, random': dict(noise_scale='member', sigma=3.0, mask='random'),
}

def config(kw):
    "The cell's `ExperimentConfig`: the `quick` preset cut down, one thread, the defense-aware attacker on."
    from cofedmid.experiment import preset
    over = dict(threads=1, adaptive=True, per_client=300, rounds=4, local_epochs=2, grad_every=4, record_every=2)
    over |= dict(defense='none') if kw is None else dict(defense='cofedmid', defense_kwargs=kw)
    return preset('quick', **over)[0]

def run(out: Path):
    "Run every unfinished cell in order (the coalition secret is fixed so that a rerun is byte-identical)."
    import torch
    from cofedmid.experiment import run_experiment
    from cofedmid.cofedmid import SECRET_ENV
    torch.set_num_threads(1)
    os.environ.setdefault(SECRET_ENV, 'hardening table')
    for name, kw in CELLS.items():
        d = out/name.replace(' ', '').replace(',', '_')
        if (d/'results.csv').is_file(): continue
        print(f'== {name}', flush=True)
        run_experiment(config(kw), d, resume=True, verbose=False)

def row(d: Path) -> dict:
    "Mean AUC over the defended targets (upload and repaired views, OFL non-members), coalition identification, accuracy."
    import pandas as pd
    res = pd.read_csv(d/'results.csv')
    dfd = res[res.target_defended & (res.nonmembers == 'ofl')] if res.target_defended.any() else res[res.nonmembers == 'ofl']
    if not res.target_defended.any():                      # undefended: the clients a defense would protect
        from cofedmid.experiment import ExperimentConfig
        dfd = dfd[dfd.target.isin(ExperimentConfig.from_dict(json.loads((d/'config.json').read_text())).defended_clients())]
    auc = dfd.groupby(['view', 'attack']).auc.mean()
    out = {}
    for v in ('upload', 'repaired'):                       # Loss-Series, and the strongest of the attacks
        out[v], out[f'{v}_best'] = float(auc[v]['loss_series']), float(auc[v].max())
        out[f'{v}_best_attack'] = auc[v].idxmax()
    ident = json.loads((d/'adaptive.json').read_text()) if (d/'adaptive.json').is_file() else []
    pr = [r['precision'] for r in ident if r['precision'] == r['precision']]
    out['found_rounds'] = f"{len(pr)}/{len(ident)}"
    out['precision'] = sum(pr) / len(pr) if pr else math.nan
    out['recall'] = sum(r['recall'] for r in ident if r['recall'] == r['recall']) / max(1, len(ident))
    out['test_acc'] = float(res.test_acc.iloc[0])
    return out

def table(out: Path) -> str:
    "The markdown table of the finished cells."
    lines = ['| noise scale, mask | upload AUC (Loss-Series) | repaired AUC (Loss-Series) | upload AUC (best attack) | '
             'repaired AUC (best attack) | coalition found (rounds) | precision | recall | test acc |',
             '|---|---|---|---|---|---|---|---|---|']
    for name in CELLS:
        d = out/name.replace(' ', '').replace(',', '_')
        if not (d/'results.csv').is_file(): continue
        r = row(d)
        lines.append(f"| {name} | {r['upload']:.3f} | {r['repaired']:.3f} | {r['upload_best']:.3f} ({r['upload_best_attack']}) | "
                     f"{r['repaired_best']:.3f} ({r['repaired_best_attack']}) | {r['found_rounds']} | {r['precision']:.2f} | "
                     f"{r['recall']:.2f} | {r['test_acc']:.3f} |")
    return '\n'.join(lines)

if __name__ == '__main__':
    out = Path(sys.argv[1])
    if '--table' in sys.argv: print(table(out))
    else: run(out)
