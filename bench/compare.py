#!/usr/bin/env python3
"""bitget-poller against ccxt, one after the other, on the built-in simulator.

    cargo build --release
    python3 -m venv /tmp/ccxt-venv && /tmp/ccxt-venv/bin/pip install 'ccxt>=4.5,<4.6'
    /tmp/ccxt-venv/bin/python bench/compare.py [--seconds 60] [--symbols 100] [--only steady]

Scenarios, each a fresh simulator (strict one-second windows, market 20/s per IP) with the
same symbols and duration for both clients:
  steady   20/s throughout
  drop     market limit 20 -> 5 -> 20 at 1/3 and 2/3 of the run
  penalty  a client is blocked for 30 s after any violation (--penalty-secs 30)
  faults   2 % each of HTML pages, truncated JSON, slow replies (2 s), resets, symbol errors
           and busy codes
Per client, from the simulator's request log (what the server saw) and wait4(): accepted
candle replies per second, utilization of the limit, 429s, CPU ms per accepted reply, peak
RSS. ccxt's CPU counts only its polling loop (after import and load_markets), which favours
ccxt. bitget-poller fetches 100 rows on a symbol's first request and only new rows after;
ccxt refetches 100 rows every time, as its users do. Writes bench/results/compare.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from poller_bench import (BIN, CANDLES, ROOT, accepted_candles, read_log, start_sim,  # noqa: E402
                          stop_sim, write_config)

FAULTS = ["--fault-html", "0.02", "--fault-truncated", "0.02", "--fault-slow", "0.02",
          "--slow-ms", "2000", "--fault-reset", "0.02", "--fault-symbol", "0.02",
          "--fault-busy", "0.02"]


def scenario_args(name, seconds):
    third = seconds // 3
    return {
        "steady": [],
        "drop": ["--market-limit-schedule", f"20,{third}:5,{2 * third}:20"],
        "penalty": ["--penalty-secs", "30"],
        "faults": FAULTS,
    }[name]


def limit_at(name, seconds, start_ms, ts):
    """The simulator's market limit at `ts` (its schedule runs from its own start)."""
    if name == "drop":
        third = seconds // 3
        if start_ms + third * 1000 <= ts < start_ms + 2 * third * 1000:
            return 5.0
    return 20.0


def budget(name, seconds, start_ms, t0, t1):
    """Requests the limit allowed in [t0, t1), counted per 10 ms."""
    return sum(limit_at(name, seconds, start_ms, t) for t in range(t0, t1, 10)) / 100.0


def run_process(cmd, env=None):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mb": usage.ru_maxrss / 1024.0,
        "stdout": proc.stdout.read(),
    }


def run_client(client, name, args, work):
    sim, port, log, stats_path, sim_start = start_sim(args.symbols, scenario_args(name, args.seconds), work)
    if client == "bitget-poller":
        cfg = write_config(work, "live", args.seconds)
        res = run_process([str(BIN), "run", "--config", str(cfg), "--base-url",
                           f"http://127.0.0.1:{port}", "--duration", str(args.seconds)],
                          {"RUST_LOG": "warn"})
        cpu = res["cpu_s"]
    else:
        res = run_process([sys.executable, str(ROOT / "bench" / "ccxt_client.py"), str(port),
                           str(args.seconds)])
        detail = json.loads(res["stdout"].strip().splitlines()[-1])
        cpu = detail["polling_cpu_s"]
        res["ccxt"] = detail
    stats = stop_sim(sim, stats_path)
    rows = read_log(log)
    ok = accepted_candles(rows)
    start_ms = int(sim_start * 1000)
    # Steady state of each client's own polling: from 2 s after its first candle reply to
    # 2 s before the end of its run (start-up costs differ: ccxt imports and loads markets).
    first = min((r["ts"] for r in ok), default=start_ms)
    t0, t1 = first + 2000, first + (args.seconds - 2) * 1000
    rate = sum(1 for r in ok if t0 <= r["ts"] < t1) / ((t1 - t0) / 1000)
    limited = [r for r in rows if r["status"] == 429]
    out = {
        "accepted_candles_per_s": round(rate, 2),
        "utilization": round(sum(1 for r in ok if t0 <= r["ts"] < t1)
                             / budget(name, args.seconds, start_ms, t0, t1), 3),
        "rate_limited": len(limited),
        "cpu_ms_per_reply": round(1000.0 * cpu / max(1, len(ok)), 3),
        "max_rss_mb": round(res["max_rss_mb"], 1),
        "accepted_candle_replies": len(ok),
        "exit": res["exit"],
    }
    if name == "drop":
        third = args.seconds // 3
        # The schedule runs on the simulator's clock, from its start.
        drop, rise = start_ms + third * 1000, start_ms + 2 * third * 1000
        out["429_per_drop"] = sum(1 for r in limited if drop - 500 <= r["ts"] < rise - 500)
        window = [r for r in ok if drop + 3000 <= r["ts"] < rise]
        out["share_of_5_from_3s_after_drop"] = round(len(window) / ((rise - drop - 3000) / 1000) / 5, 3)
    if name == "penalty":
        # Seconds in which the client got nothing but rejections: time spent penalized.
        seconds_ok = {r["ts"] // 1000 for r in ok}
        seconds_rejected = {r["ts"] // 1000 for r in limited}
        out["seconds_blocked"] = len(seconds_rejected - seconds_ok)
    if "ccxt" in res:
        out["ccxt_errors"] = res["ccxt"]["error_kinds"]
        out["ccxt_version"] = res["ccxt"]["ccxt_version"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--only", choices=["steady", "drop", "penalty", "faults"])
    args = parser.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN} is missing; run cargo build --release first")
    results = {"seconds": args.seconds, "symbols": args.symbols}
    for name in ["steady", "drop", "penalty", "faults"]:
        if args.only and args.only != name:
            continue
        for client in ["bitget-poller", "ccxt"]:
            with tempfile.TemporaryDirectory() as tmp:
                print(f"{name}: {client} ...", flush=True)
                r = run_client(client, name, args, Path(tmp))
                results.setdefault(name, {})[client] = r
                print("  " + json.dumps(r), flush=True)
        a, b = results[name]["bitget-poller"], results[name]["ccxt"]
        results[name]["ratios"] = {
            "cpu_ccxt_over_ours": round(b["cpu_ms_per_reply"] / max(1e-9, a["cpu_ms_per_reply"]), 1),
            "rss_ccxt_over_ours": round(b["max_rss_mb"] / max(1e-9, a["max_rss_mb"]), 1),
        }
        print("  ratios " + json.dumps(results[name]["ratios"]), flush=True)
    (ROOT / "bench" / "results" / "compare.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
