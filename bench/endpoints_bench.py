#!/usr/bin/env python3
"""Per-endpoint budgets (issue 21): what Bitget's one-window-per-endpoint metering gives.

    cargo build --release
    python3 bench/endpoints_bench.py [--only closed1000|closed1000-one-window|liveccxt] \
        [--ccxt /path/to/python-with-ccxt] [--repeat 3]

Every scenario starts a fresh simulator (strict sliding one-second windows per endpoint and
client IP, 6000/min overall, 0-30 ms arrival delay on every request) and reads what the
server saw from its request log.

  closed1000            1000 contracts x 1m in closed mode until two closes have been
                        delivered: the first reads and every round take turns between
                        /candles and /history-candles. Reported per round: accepted candle
                        replies per second on both endpoints from the close to the round's
                        end, and how long after its close the round was delivered (target:
                        1000 / 36 + 2 = 29.8 s).
  closed1000-one-window the same with `[limits] market_total_per_sec = 20`: one window over
                        the whole category, as before this issue.
  liveccxt              the gateway polling 200 contracts x 1m in live mode while an
                        unmodified ccxt bot (enableRateLimit) calls fetch_order_book in a loop
                        through it: candle replies and order books per second over the steady
                        state (from 5 s after the first request to 2 s before the end).

Writes bench/results/endpoints.json; with --repeat, numeric figures are medians (every run listed).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from network_bench import config  # noqa: E402
from harness import (BIN, ROOT, announced, limited, per_s, read_log, run_scenarios,  # noqa: E402
                     start_sim, stop_sim)

CANDLES = "/api/v2/mix/market/candles"
HISTORY = "/api/v2/mix/market/history-candles"
DEPTH = "/api/v2/mix/market/merge-depth"
JITTER30 = ["--jitter-ms", "30"]

BOT = r'''
import asyncio, json, sys, time
import ccxt.async_support as ccxt

base, seconds = sys.argv[1], float(sys.argv[2])

async def main():
    ex = ccxt.bitget({"enableRateLimit": True, "headers": {"X-Client-Name": "books"}})
    ex.urls["api"] = {k: base for k in ex.urls["api"]}
    ex.options["fetchMarkets"] = {"types": ["swap"]}
    ok = errors = 0
    kinds = {}
    try:
        markets = await ex.load_markets()
        symbols = [s for s, m in markets.items() if m["swap"]][:50]
        until = time.time() + seconds
        async def loop(offset):
            nonlocal ok, errors
            i = offset
            while time.time() < until:
                try:
                    await ex.fetch_order_book(symbols[i % len(symbols)], limit=5)
                    ok += 1
                except Exception as e:
                    errors += 1
                    kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
                i += 4
        await asyncio.gather(*(loop(k) for k in range(4)))
    finally:
        await ex.close()
    print(json.dumps({"ok": ok, "errors": errors, "kinds": kinds}))

asyncio.run(main())
'''


def ok(rows, path):
    return [r for r in rows if r["path"] == path and r["status"] == 200 and r["code"] == "00000"]



def closed1000(extra):
    def run(args, work):
        sim, port, log, stats_path, _ = start_sim(1000, JITTER30, work)
        # Until two closes after the first reads, plus the time to deliver the second.
        now = time.time()
        seconds = int(120 - (now % 60) + 40)
        proc = subprocess.run(
            [str(BIN), "run", "--config", str(config(work, "poll", mode="closed", extra=extra)),
             "--base-url", f"http://127.0.0.1:{port}", "--duration", str(seconds)],
            capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
        stats = stop_sim(sim, stats_path)
        rows = read_log(log)
        candle_ok = ok(rows, CANDLES) + ok(rows, HISTORY)
        unified = (work / "poll-logs" / "trading_unified.log").read_text()
        rounds = [(int(c), int(s), int(l)) for c, s, l in re.findall(
            r"closed candles delivered close_ms=(\d+) symbols=(\d+).*?latency_ms=(\d+)", unified)]
        # Whole rounds only: the first close may fall in the first reads.
        full = [r for r in rounds if r[1] == 1000]
        rates = [per_s(candle_ok, close, close + latency) for close, _, latency in full]
        return {
            "sim_args": " ".join(JITTER30),
            "extra_config": extra.strip(),
            "exit": proc.returncode,
            "rounds": len(full),
            "round_latency_s": [latency / 1000 for _, _, latency in full],
            "worst_round_latency_s": max((l for _, _, l in full), default=0) / 1000,
            "candle_replies_per_s_in_rounds": min(rates) if rates else 0.0,
            "history_share": len(ok(rows, HISTORY)) / max(1, len(candle_ok)),
            "rate_limited": len(limited(rows)),
            "sim_rate_limited": stats["total"]["rate_limited"],
            "max_accepted_in_1s_candles": stats["endpoints"][CANDLES]["max_accepted_in_1s"],
            "max_accepted_in_1s_history": stats["endpoints"].get(HISTORY, {}).get("max_accepted_in_1s"),
        }
    return run


def liveccxt(args, work):
    if not args.ccxt:
        return {"skipped": "needs --ccxt PYTHON with ccxt installed"}
    seconds = args.seconds
    sim, port, log, stats_path, start = start_sim(200, JITTER30, work)
    gateway = subprocess.Popen(
        [str(BIN), "gateway", "--config", str(config(work, "poll")), "--base-url",
         f"http://127.0.0.1:{port}", "--listen", "127.0.0.1:0", "--duration", str(seconds + 20)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"})
    base = announced(gateway, r"^gateway: (http://\S+)")
    threading.Thread(target=lambda: [None for _ in gateway.stdout], daemon=True).start()
    bot = subprocess.run([args.ccxt, "-c", BOT, base, str(seconds)], capture_output=True, text=True,
                         timeout=seconds + 120)
    gateway.terminate()
    gateway.wait(timeout=30)
    stats = stop_sim(sim, stats_path)
    rows = read_log(log)
    books = ok(rows, DEPTH)
    t0 = min(r["ts"] for r in books) + 5000 if books else 0
    t1 = max(r["ts"] for r in books) - 2000 if books else 1
    lines = [l for l in bot.stdout.splitlines() if l.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"ok": 0, "errors": -1, "stderr": bot.stderr[-2000:]}
    return {
        "sim_args": " ".join(JITTER30),
        "seconds": seconds,
        "candle_replies_per_s": per_s(ok(rows, CANDLES), t0, t1),
        "order_books_per_s": per_s(books, t0, t1),
        "candle_utilization": per_s(ok(rows, CANDLES), t0, t1) / 20.0,
        "order_book_utilization": per_s(books, t0, t1) / 20.0,
        "rate_limited": len(limited(rows)),
        "sim_rate_limited": stats["total"]["rate_limited"],
        "bot_replies": result.get("ok"),
        "bot_errors": result.get("errors"),
        "bot_error_kinds": result.get("kinds"),
    }


SCENARIOS = {
    "closed1000": closed1000(""),
    "closed1000-one-window": closed1000("[limits]\nmarket_total_per_sec = 20\n"),
    "liveccxt": liveccxt,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(SCENARIOS), action="append")
    parser.add_argument("--ccxt", help="a python with ccxt installed, for liveccxt")
    parser.add_argument("--seconds", type=int, default=60, help="length of liveccxt")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    run_scenarios(SCENARIOS, args, ROOT / "bench" / "results" / "endpoints.json")


if __name__ == "__main__":
    main()
