"""What every Python script of this repository needs, in one place: the tests (`tests/*.py`,
run by `.ci/run`) and the benchmarks (`bench/*.py`) import it.

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # from bench/
    import harness
"""
import json
import re
import socket
import statistics
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "bitget-poller"
CANDLES = "/api/v2/mix/market/candles"

checks = 0


def check(condition, what):
    """Counts and prints a passed check; raises with `what` on a failed one."""
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1
    print(f"ok - {what}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def announced(process, pattern, lines=40):
    """The first group of `pattern` in the first `lines` lines `process` prints, or None."""
    for _ in range(lines):
        line = process.stdout.readline()
        found = re.search(pattern, line)
        if found:
            return found.group(1)
    return None


def rss_mb(pid):
    """Resident memory of `pid` in MB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def start_sim(symbols, extra, work, binary=BIN):
    """A simulator on a free loopback port with a request log and a stats file in `work`:
    (process, port, log path, stats path, start time)."""
    import time

    port = free_port()
    log = work / "requests.jsonl"
    stats = work / "sim_stats.json"
    before = time.time()
    sim = subprocess.Popen(
        [str(binary), "sim", "--addr", f"127.0.0.1:{port}", "--symbols", str(symbols),
         "--request-log", str(log), "--stats-json", str(stats), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    sim.stdout.readline()  # "listening on ..."
    started = (before + time.time()) / 2
    return sim, port, log, stats, started


def stop_sim(sim, stats_path):
    sim.send_signal(2)
    sim.wait(timeout=30)
    return json.loads(Path(stats_path).read_text())


def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def limited(rows):
    return [r for r in rows if r["status"] == 429 or r["code"] == "429"]


def per_s(rows, t0, t1):
    return sum(1 for r in rows if t0 <= r["ts"] < t1) / max(1e-9, (t1 - t0) / 1000.0)


def median_of(runs):
    """One result per key: the median of numeric figures (with every run's value listed),
    the first run's value otherwise."""
    if len(runs) == 1:
        return runs[0]
    out = {}
    for key, first in runs[0].items():
        values = [r.get(key) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = statistics.median(values)
            out[key + "_runs"] = values
        else:
            out[key] = first
    return out


def run_scenarios(scenarios, args, out_path):
    """Runs each scenario `args.only` names (all without it) `args.repeat` times, each in a
    fresh temporary folder, printing every run, and merges the medians into `out_path`."""
    import sys
    import tempfile

    if not BIN.exists():
        sys.exit(f"{BIN} is missing; run cargo build --release first")
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for name, fn in scenarios.items():
        if args.only and name not in args.only:
            continue
        runs = []
        for i in range(max(1, args.repeat)):
            with tempfile.TemporaryDirectory() as tmp:
                print(f"running {name} ({i + 1} of {args.repeat}) ...", flush=True)
                runs.append(fn(args, Path(tmp)))
                print(json.dumps(runs[-1], indent=2), flush=True)
        results[name] = median_of(runs)
        out_path.write_text(json.dumps(results, indent=2) + "\n")
