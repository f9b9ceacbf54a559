#!/usr/bin/env python3
"""bitget-poller against the built-in simulator: budget use, 429s, CPU and memory.

    cargo build --release && python3 bench/poller_bench.py [--seconds 60] [--symbols 200]

Scenarios (strict sliding one-second windows at 20/s, 200 symbols):
  live     live mode, steady limit
  drop     live mode, market limit 20 -> 5 -> 20 (at 1/3 and 2/3 of the run)
  closed   closed mode, two 1m closes

The simulator and the poller run as separate processes; the poller's CPU time and peak RSS
come from wait4() on its process alone, and acceptance figures from the simulator's request
log (what the server saw). Prints a table and writes bench/results/poller.json.
"""
import argparse
import collections
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import BIN, CANDLES, ROOT, free_port, read_log, start_sim, stop_sim  # noqa: E402,F401


def write_config(work, mode, seconds):
    cfg = work / "poll.toml"
    cfg.write_text(f"""
[poll]
symbols = "all"
timeframes = ["1m"]
mode = "{mode}"
tickers_interval_secs = 10
discovery_cache = "{work / 'cache.json'}"
[store]
path = "{work / 'candles.sqlite'}"
[logging]
dir = "{work / 'logs'}"
usage_interval_secs = 10
[trading]
enabled = false
[feed]
source = "rest"
""")
    return cfg


def poller_command(cfg, port, seconds):
    """The `bitget-poller run` command line against the simulator on `port`."""
    return [str(BIN), "run", "--config", str(cfg), "--base-url", f"http://127.0.0.1:{port}",
            "--duration", str(seconds)]


def run_poller(cfg, port, seconds):
    proc = subprocess.Popen(
        poller_command(cfg, port, seconds),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"})
    started = time.time()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.time() - started
    out = proc.stdout.read()
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": usage.ru_maxrss / 1024.0,
        "wall_s": elapsed,
        "stdout": out,
    }


def accepted_candles(rows):
    return [r for r in rows if r["path"] == CANDLES and r["status"] == 200 and r["code"] == "00000"]


def rate_between(rows, start_ms, end_ms):
    n = sum(1 for r in rows if start_ms <= r["ts"] < end_ms)
    return n / ((end_ms - start_ms) / 1000.0)


def scenario_live(args, work):
    sim, port, log, stats_path, _ = start_sim(args.symbols, [], work)
    res = run_poller(write_config(work, "live", args.seconds), port, args.seconds)
    stats = stop_sim(sim, stats_path)
    rows = read_log(log)
    ok = accepted_candles(rows)
    # Steady state: skip the first 2 s (discovery, connection set-up) and the last second.
    t0 = min(r["ts"] for r in rows) + 2000
    t1 = t0 + (args.seconds - 3) * 1000
    market_ok = [r for r in rows if r["status"] == 200 and r["ts"] >= t0 and r["ts"] < t1]
    return {
        "candle_replies_per_s": rate_between(ok, t0, t1),
        "market_replies_per_s": len(market_ok) / ((t1 - t0) / 1000.0),
        "utilization_candles": rate_between(ok, t0, t1) / 20.0,
        "utilization_market": len(market_ok) / ((t1 - t0) / 1000.0) / 20.0,
        "rate_limited": stats["total"]["rate_limited"],
        "max_accepted_in_1s": stats["endpoints"][CANDLES]["max_accepted_in_1s"],
        "cpu_ms_per_reply": 1000.0 * res["cpu_s"] / max(1, len(ok)),
        "max_rss_mb": res["max_rss_mb"],
        "exit": res["exit"],
    }


def scenario_drop(args, work):
    third = args.seconds // 3
    sched = f"20,{third}:5,{2 * third}:20"
    sim, port, log, stats_path, sim_start = start_sim(
        args.symbols, ["--market-limit-schedule", sched], work)
    res = run_poller(write_config(work, "live", args.seconds), port, args.seconds)
    stats = stop_sim(sim, stats_path)
    rows = read_log(log)
    ok = accepted_candles(rows)
    start_ms = int(sim_start * 1000)
    drop, rise = start_ms + third * 1000, start_ms + 2 * third * 1000
    limited = [r for r in rows if r["status"] == 429 or r["code"] == "429"]
    per_phase = {
        "429_after_drop": sum(1 for r in limited if drop - 500 <= r["ts"] < rise - 500),
        "429_after_rise": sum(1 for r in limited if r["ts"] >= rise - 500),
        "429_before_drop": sum(1 for r in limited if r["ts"] < drop - 500),
    }
    return {
        "schedule": sched,
        **per_phase,
        "rate_limited": stats["total"]["rate_limited"],
        # From 3 s after each change to the next change.
        "util_of_5_from_3s_after_drop": rate_between(ok, drop + 3000, rise) / 5.0,
        "util_of_20_from_3s_after_rise": rate_between(ok, rise + 3000, start_ms + args.seconds * 1000) / 20.0,
        "util_of_5_in_2s_to_3s_after_drop": rate_between(ok, drop + 2000, drop + 3000) / 5.0,
        "exit": res["exit"],
    }


def scenario_closed(args, work):
    sim, port, log, stats_path, _ = start_sim(args.symbols, [], work)
    # Run until two closes have passed, plus the time to deliver the second.
    now = time.time()
    to_second_close = 120 - (now % 60) + 15
    res = run_poller(write_config(work, "closed", to_second_close), port, int(to_second_close) + 1)
    stats = stop_sim(sim, stats_path)
    unified = (work / "logs" / "trading_unified.log").read_text()
    latencies = [int(m) for m in re.findall(r"closed candles delivered .*latency_ms=(\d+)", unified)]
    rounds = re.findall(r"closed candles delivered close_ms=(\d+) symbols=(\d+)", unified)
    return {
        "closes": len(latencies),
        "symbols_per_close": [int(s) for _, s in rounds],
        "latency_ms": latencies,
        "target_ms": args.symbols / 20 * 1000 + 1000,
        "rate_limited": stats["total"]["rate_limited"],
        "exit": res["exit"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--only", choices=["live", "drop", "closed"])
    args = parser.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN} is missing; run cargo build --release first")
    results = {}
    for name, fn in [("live", scenario_live), ("drop", scenario_drop), ("closed", scenario_closed)]:
        if args.only and args.only != name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            print(f"running {name} ...", flush=True)
            results[name] = fn(args, Path(tmp))
            print(json.dumps(results[name], indent=2), flush=True)
    (ROOT / "bench" / "results" / "poller.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
