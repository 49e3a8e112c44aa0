"""The explanation's deployment steps (`nbs/explanations/flower.ipynb`, section Deployment), run verbatim on 127.0.0.1:
a SuperLink, three SuperNodes on their own partition files (none with the dataset), `flwr run`. Used by the test
`tests/test_flower_deploy.py` and by benchmark 8."""
from __future__ import annotations
import json, os, re, shlex, socket, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOC_PORTS = (9093, 9100, 9101, 9102)        # the SuperLink's and the SuperNodes' ports in the documented lines

def documented_steps() -> tuple:
    "`(experiment.yaml text, shell lines)` of the explanation's Deployment section."
    nb = json.loads((ROOT/'nbs'/'explanations'/'flower.ipynb').read_text())
    md = next(''.join(c['source']) for c in nb['cells']
              if c['cell_type'] == 'markdown' and ''.join(c['source']).startswith('## Deployment'))
    sh = re.search(r"```sh\n(.*?)```", md, re.S).group(1)
    return re.search(r"```yaml\n(.*?)```", md, re.S).group(1), [l for l in sh.splitlines() if l.strip()]

def free_ports(n: int) -> list:
    "`n` distinct free TCP ports on 127.0.0.1."
    socks = [socket.socket() for _ in range(n)]
    for s in socks: s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks: s.close()
    return ports

def wait_port(port: int, timeout: float = 60):
    "Return once something listens on `port` (raise after `timeout` seconds)."
    t0 = time.time()
    while time.time() - t0 < timeout:
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', port)) == 0: return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:.0f} s")

def split_line(line: str, ports: dict) -> tuple:
    "`(env assignments, argv, background?)` of a documented line, its ports replaced by `ports`."
    for old, new in ports.items(): line = line.replace(str(old), str(new))
    bg = line.rstrip().endswith('&')
    words, env = shlex.split(line.rstrip().rstrip('&')), {}
    while '=' in words[0] and not words[0].startswith('-'):
        k, v = words.pop(0).split('=', 1); env[k] = v
    return env, words, bg

def flower_processes(ports: dict) -> list:
    "Pids of live processes whose command line names one of `ports` (Flower's helpers run in sessions of their own)."
    found = []
    for d in Path('/proc').glob('[0-9]*'):
        try: cmd, state = (d/'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace'), (d/'stat').read_text().rsplit(')', 1)[1].split()[0]
        except (OSError, IndexError): continue
        if state != 'Z' and any(f':{p}' in cmd for p in ports.values()): found.append(int(d.name))
    return found

def stop(procs: list, ports: dict, timeout: float = 30):
    "Stop every process started and every Flower helper they spawned (SIGTERM, then SIGKILL); raise if one survives."
    for p in procs:
        try: os.killpg(p.pid, 15)
        except ProcessLookupError: pass
    for p in procs:
        try: p.wait(timeout=20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, 9); p.wait(timeout=20)
    t0 = time.time()
    while (left := flower_processes(ports)) and time.time() - t0 < timeout: time.sleep(0.5)
    for pid in left:
        try: os.kill(pid, 9)
        except ProcessLookupError: pass
    if left: raise RuntimeError(f"Flower processes {left} outlived their SuperLink/SuperNode by {timeout:.0f} s (killed)")

def run_documented(work: Path, # an empty folder: the steps' working directory
                   yaml_edit=None, # optional `f(yaml text) -> yaml text` (the benchmark runs more rounds)
                   timeout: float = 600 # seconds for each foreground step
                  ) -> dict:
    "Run the documented steps in `work` with free ports; `{'out': the run folder, 'config': experiment.yaml, 'seconds': ...}`."
    yaml_text, lines = documented_steps()
    (work/'experiment.yaml').write_text(yaml_edit(yaml_text) if yaml_edit else yaml_text)
    ports = dict(zip(DOC_PORTS, free_ports(len(DOC_PORTS))))
    empty = work/'no-data'; empty.mkdir()
    base = {k: v for k, v in os.environ.items() if k not in ('COFEDMID_COALITION_SECRET', 'FLWR_HOME')}
    base |= {'PATH': f"{BIN}{os.pathsep}{base.get('PATH', '')}", 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    procs, t0, steps = [], time.perf_counter(), {}
    try:
        for i, line in enumerate(lines):
            env, argv, bg = split_line(line, ports)
            if argv[0] == 'cofedmid': env = base | env                     # the experimenter's machine: it has the dataset
            else: env = base | {'COFEDMID_DATA': str(empty), 'COFEDMID_CACHE': str(work/f'cache-{i}'),   # Flower's: no dataset
                                'FLWR_HOME': str(work/f'flwr-home-{i}')} | env
            t = time.perf_counter()
            with open(work/f'step-{i}.log', 'w') as log:
                if bg:
                    procs.append(subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                    if argv[0] == 'flower-superlink': wait_port(ports[9093])
                else: subprocess.run(argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=timeout)
            steps[' '.join(argv[:3])] = time.perf_counter() - t
            if argv[:3] == ['cofedmid', 'flower', 'app']:                  # the app's connection: the free port
                conf = work/argv[3]/'flwr'/'config.toml'
                conf.write_text(conf.read_text().replace('9093', str(ports[9093])))
    finally: stop(procs, ports)
    out = work/'runs'/'deployed'
    if not (out/'results.csv').is_file():
        tail = '\n'.join((work/f'step-{len(lines) - 1}.log').read_text().splitlines()[-40:])
        raise RuntimeError(f"the deployed run wrote no results.csv; flwr run said:\n{tail}")
    return {'out': out, 'config': work/'experiment.yaml', 'seconds': time.perf_counter() - t0, 'steps': steps}
