#!/usr/bin/env python3
"""Fault soak: bitget-poller for 10 minutes against a misbehaving simulator.

    cargo build --release && python3 bench/soak.py [--minutes 10] [--symbols 200] [--rate 0.03]

Every fault kind at --rate (default 3 %): HTML pages, truncated JSON, slow replies (2 s),
connection resets, symbol errors and busy codes. Checks, from the simulator's request log,
the poller's log and /proc:
  - no panic: exit 0 and no "panicked" anywhere;
  - no symbol stuck: no symbol goes longer without a good candle reply than twice its
    timeframe plus the backoff cap (2 x 60 s + 30 s);
  - memory: RSS at the end within 10 % of RSS after the first minute;
  - every failure logged with its class and symbol.
Writes bench/results/soak.json.
"""
import argparse
import collections
import json
import re
import sys
import tempfile
import time
import subprocess
import os
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from poller_bench import CANDLES, ROOT, poller_command, read_log, start_sim, stop_sim, write_config  # noqa: E402
import harness  # noqa: E402


def rss_mb(pid):
    return harness.rss_mb(pid) or 0.0

STUCK_LIMIT_S = 2 * 60 + 30


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--rate", type=float, default=0.03)
    args = parser.parse_args()
    seconds = int(args.minutes * 60)
    rate = str(args.rate)
    faults = ["--fault-html", rate, "--fault-truncated", rate, "--fault-slow", rate,
              "--slow-ms", "2000", "--fault-reset", rate, "--fault-symbol", rate,
              "--fault-busy", rate]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sim, port, log, stats_path, _ = start_sim(args.symbols, faults, work)
        cfg = write_config(work, "live", seconds)
        proc = subprocess.Popen(
            poller_command(cfg, port, seconds),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUST_LOG": "error"})
        started = time.time()
        samples = []
        while proc.poll() is None:
            time.sleep(5)
            try:
                mb = rss_mb(proc.pid)
            except FileNotFoundError:
                break
            if mb > 0:  # 0 once the process is exiting
                samples.append((time.time() - started, mb))
        stdout, stderr = proc.communicate()
        stats = stop_sim(sim, stats_path)
        rows = read_log(log)
        unified = (work / "logs" / "trading_unified.log").read_text()

    good = collections.defaultdict(list)
    for r in rows:
        if r["path"] == CANDLES and r["status"] == 200 and r["code"] == "00000" and not r["fault"]:
            good[r["symbol"]].append(r["ts"])
    t_first = min(r["ts"] for r in rows)
    t_last = max(r["ts"] for r in rows)
    worst_gap = {}
    for symbol, times in good.items():
        times.sort()
        edges = [t_first] + times + [t_last]
        worst_gap[symbol] = max(b - a for a, b in zip(edges, edges[1:])) / 1000.0
    missing = args.symbols - len(good)
    stuck = {s: g for s, g in worst_gap.items() if g > STUCK_LIMIT_S}

    after_first_minute = next((mb for t, mb in samples if t >= 60), None)
    at_end = samples[-1][1] if samples else None

    failures = {k: v for k, v in stats["faults"].items() if k != "slow"}
    logged = len(re.findall(r"class=\S+", unified))
    logged_with_symbol = len(re.findall(r"symbol=[A-Z0-9]+USDT.*class=|class=.*symbol=[A-Z0-9]+USDT", unified))
    result = {
        "minutes": args.minutes,
        "symbols": args.symbols,
        "fault_rate_each": args.rate,
        "requests": stats["total"]["requests"],
        "faults_injected": stats["faults"],
        "rate_limited": stats["total"]["rate_limited"],
        "exit": proc.returncode,
        "panicked": "panicked" in stderr or "panicked" in unified,
        "symbols_never_served": missing,
        "worst_gap_s": max(worst_gap.values(), default=None),
        "stuck_symbols": stuck,
        "stuck_limit_s": STUCK_LIMIT_S,
        "rss_mb_after_1_min": after_first_minute,
        "rss_mb_at_end": at_end,
        "rss_growth": None if not after_first_minute else round(at_end / after_first_minute - 1, 3),
        "rss_mb_max": max((mb for _, mb in samples), default=None),
        "failures_injected": sum(failures.values()),
        "failure_lines_with_class": logged,
        "failure_lines_with_class_and_symbol": logged_with_symbol,
        "summary": stdout.strip().splitlines()[-12:],
    }
    result["passed"] = (
        result["exit"] == 0 and not result["panicked"] and not stuck and missing == 0
        and result["rss_growth"] is not None and abs(result["rss_growth"]) <= 0.10
        and logged >= result["failures_injected"])
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results" / "soak.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
