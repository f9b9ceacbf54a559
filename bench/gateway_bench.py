#!/usr/bin/env python3
"""Four ccxt bots and the poller on one IP, straight to Bitget (the simulator) or through the
gateway: upstream 429s, upstream requests, the bots' errors, candle freshness, the gateway's
memory.

Each bot is its own process, as the bot this project grew from: ccxt async, an
`asyncio.gather(fetch_ohlcv)` loop over 100 symbols × 1m/5m/15m (100 rows), `enableRateLimit`
on. The poller polls the 100 symbols' 1m candles; through the gateway it also keeps the 5m
and 15m series fresh once the bots ask for them.
The simulator has 100 contracts, strict one-second windows per client IP and, by default,
0-30 ms of arrival delay on every request, as on an ordinary internet path; every process
is on 127.0.0.1, so all share one budget, as on one VPS.

    cargo build --release
    python3 bench/gateway_bench.py --ccxt /path/to/python-with-ccxt [--seconds 60] [--jitter-ms 30]

Writes bench/results/gateway.json. Freshness: the share of successful replies whose newest closed
candle is the newest one the exchange had closed when the reply arrived.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import BIN, ROOT, announced, rss_mb  # noqa: E402,F401

BOT = r'''
import asyncio, json, sys, time
import ccxt.async_support as ccxt

base, seconds, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]

async def main():
    ex = ccxt.bitget({"enableRateLimit": True, "headers": {"X-Client-Name": name}})
    ex.urls["api"] = {k: base for k in ex.urls["api"]}
    ex.options["fetchMarkets"] = {"types": ["swap"]}
    ok = errors = 0
    ages = []
    kinds = {}
    try:
        markets = await ex.load_markets()
        symbols = [s for s, m in markets.items() if m["swap"]][:100]
        until = time.time() + seconds
        steps = {"1m": 60_000, "5m": 300_000, "15m": 900_000}
        async def one(symbol, timeframe):
            nonlocal ok, errors
            try:
                rows = await ex.fetch_ohlcv(symbol, timeframe, limit=100)
                now = time.time() * 1000
                step = steps[timeframe]
                closed = [r for r in rows if r[0] + step <= now]
                if closed:
                    # Candles behind the newest one the exchange has closed (0 = current).
                    newest = (now // step) * step - step
                    ages.append(max(0, (newest - closed[-1][0]) // step))
                ok += 1
            except Exception as e:
                errors += 1
                kinds[type(e).__name__] = kinds.get(type(e).__name__, 0) + 1
        while time.time() < until:
            await asyncio.gather(*(one(s, tf) for s in symbols for tf in steps))
    finally:
        await ex.close()
    ages.sort()
    print(json.dumps({"ok": ok, "errors": errors, "kinds": kinds,
                      "current": sum(1 for a in ages if a == 0), "judged": len(ages)}))

asyncio.run(main())
'''


def scenario(python, seconds, through_gateway, tmp, jitter_ms):
    stats_path = tmp / "stats.json"
    sim = subprocess.Popen([str(BIN), "sim", "--addr", "127.0.0.1:0", "--symbols", "100", "--duration", "900",
                            "--jitter-ms", str(jitter_ms), "--stats-json", str(stats_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    sim_url = announced(sim, r"listening on (http://\S+)")
    config = tmp / "poller.toml"
    config.write_text('[poll]\nsymbols = "all"\ntimeframes = ["1m"]\ntickers_interval_secs = 0\n'
                      f'discovery_cache = "{tmp}/contracts.json"\n'
                      f'[logging]\ndir = "{tmp}/logs"\n[trading]\nenabled = false\n[store]\npath = "{tmp}/candles.sqlite"\n'
                      # REST polling: what this benchmark measured before the feed.
                      '[feed]\nsource = "rest"\n')
    command = "gateway" if through_gateway else "run"
    args = [str(BIN), command, "--config", str(config), "--base-url", sim_url, "--duration", str(seconds + 30)]
    if through_gateway:
        args += ["--listen", "127.0.0.1:0"]
    poller = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "RUST_LOG": "warn"})
    base = announced(poller, r"^gateway: (http://\S+)") if through_gateway else sim_url
    if through_gateway:
        # Drain the rest of its output so it never blocks.
        import threading
        threading.Thread(target=lambda: [None for _ in poller.stdout], daemon=True).start()
    bots = [subprocess.Popen([python, "-c", BOT, base, str(seconds), f"bot{i}"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True) for i in range(4)]
    peak = 0.0
    deadline = time.time() + seconds + 120
    while any(b.poll() is None for b in bots) and time.time() < deadline:
        if through_gateway:
            peak = max(peak, rss_mb(poller.pid) or 0.0)
        time.sleep(1)
    results = []
    for b in bots:
        out, _ = b.communicate(timeout=60)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        results.append(json.loads(lines[-1]) if lines else {"ok": 0, "errors": -1})
    poller.terminate()
    poller.wait(timeout=30)
    sim.terminate()
    sim.wait(timeout=30)
    stats = json.loads(stats_path.read_text())
    judged = sum(r.get("judged", 0) for r in results)
    current = sum(r.get("current", 0) for r in results)
    return {
        "through_gateway": through_gateway,
        "jitter_ms": jitter_ms,
        "seconds": seconds,
        "upstream_requests": stats["total"]["requests"],
        "upstream_429": stats["total"]["rate_limited"],
        "bot_replies": sum(r["ok"] for r in results),
        "bot_errors": sum(r["errors"] for r in results),
        "bot_error_kinds": [r.get("kinds", {}) for r in results],
        "replies_with_the_newest_closed_candle": round(current / judged, 4) if judged else None,
        "gateway_peak_rss_mb": round(peak, 1) if through_gateway else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ccxt", required=True, help="a python with ccxt installed")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--jitter-ms", type=int, default=30,
                        help="arrival delay the simulator adds to every request, uniform 0..N ms")
    args = parser.parse_args()
    if not BIN.exists():
        sys.exit(f"{BIN} is missing; run cargo build --release first")
    results = {}
    for name, gateway in [("direct", False), ("gateway", True)]:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"running {name} ...", flush=True)
            results[name] = scenario(args.ccxt, args.seconds, gateway, Path(tmp), args.jitter_ms)
            print(json.dumps(results[name], indent=2), flush=True)
    (ROOT / "bench" / "results" / "gateway.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
