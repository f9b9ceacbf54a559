#!/usr/bin/env python3
"""A real client accepts the simulator: ccxt 4.5 (sync API) against `bitget-poller sim`.

Starts the simulator binary on a free loopback port with its request log, points every ccxt
Bitget URL at it, runs the calls a ccxt user makes, and checks what came back and what the
server saw. Exits non-zero on the first failure. With --gateway, ccxt talks to
`bitget-poller gateway` in front of the simulator instead, unmodified but for its URLs, and
every check must still pass. Usage:

    python3 tests/ccxt_sim.py [path/to/bitget-poller] [--gateway]
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import harness
from harness import check

import ccxt

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
GATEWAY = "--gateway" in sys.argv[1:]
BIN = ARGS[0] if ARGS else os.path.join("target", "release", "bitget-poller")
KEY, SECRET, PASSPHRASE = "ccxt_key", "ccxt_secret", "ccxt_pass"


def exchange(base, secret=SECRET):
    ex = ccxt.bitget({"apiKey": KEY, "secret": secret, "password": PASSPHRASE, "enableRateLimit": True})
    ex.urls["api"] = {name: base for name in ex.urls["api"]}
    # Only USDT-margined perpetuals and spot exist in the simulator.
    ex.options["fetchMarkets"] = {"types": ["spot", "swap"]}
    return ex


def main():
    workdir = tempfile.mkdtemp(prefix="ccxt-sim-")
    log_path = os.path.join(workdir, "requests.jsonl")
    stats_path = os.path.join(workdir, "stats.json")
    sim = subprocess.Popen(
        [BIN, "sim", "--addr", "127.0.0.1:0", "--symbols", "20", "--duration", "120",
         "--key", f"{KEY}:{SECRET}:{PASSPHRASE}", "--request-log", log_path, "--stats-json", stats_path],
        stdout=subprocess.PIPE, text=True)
    gateway = None
    try:
        line = sim.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        check(match is not None, f"simulator announces its address ({line.strip()!r})")
        base = match.group(1)
        if GATEWAY:
            config_path = os.path.join(workdir, "gateway.toml")
            with open(config_path, "w") as f:
                f.write('[poll]\nsymbols = ["BTCUSDT"]\ntickers_interval_secs = 1\n'
                        f'discovery_cache = "{workdir}/contracts.json"\n'
                        f'[logging]\ndir = "{workdir}/logs"\n[trading]\nenabled = false\n'
                        f'[store]\npath = "{workdir}/candles.sqlite"\n')
            gateway = subprocess.Popen(
                [BIN, "gateway", "--config", config_path, "--base-url", base, "--listen", "127.0.0.1:0",
                 "--duration", "120"], stdout=subprocess.PIPE, text=True)
            address = None
            for _ in range(20):
                line = gateway.stdout.readline()
                found = re.search(r"^gateway: (http://\S+)", line)
                if found:
                    address = found.group(1)
                    break
            check(address is not None, f"the gateway announces its address ({address})")
            base = address
        ex = exchange(base)

        markets = ex.load_markets()
        check("BTC/USDT:USDT" in markets and "BTC/USDT" in markets, "load_markets finds swap and spot BTC/USDT")
        check(markets["BTC/USDT:USDT"]["id"] == "BTCUSDT" and markets["BTC/USDT:USDT"]["swap"], "swap market parsed")
        check(len([m for m in markets.values() if m["swap"]]) == 20, "20 swap markets")

        server_time = ex.fetch_time()
        check(isinstance(server_time, int) and server_time > 1_600_000_000_000, f"fetch_time {server_time}")

        ticker = ex.fetch_ticker("BTC/USDT:USDT")
        check(ticker["symbol"] == "BTC/USDT:USDT" and ticker["last"] > 0 and ticker["bid"] <= ticker["ask"],
              f"fetch_ticker last={ticker['last']} bid={ticker['bid']} ask={ticker['ask']}")

        tickers = ex.fetch_tickers(None, {"type": "swap"})
        check(len(tickers) == 20 and all(t["last"] > 0 for t in tickers.values()), f"fetch_tickers swap: {len(tickers)}")

        for symbol, timeframe, step in [("BTC/USDT:USDT", "1m", 60_000), ("ETH/USDT:USDT", "1h", 3_600_000),
                                        ("BTC/USDT", "1m", 60_000), ("ETH/USDT", "1d", 86_400_000)]:
            rows = ex.fetch_ohlcv(symbol, timeframe, limit=50)
            opens = [r[0] for r in rows]
            check(len(rows) == 50 and all(b - a == step for a, b in zip(opens, opens[1:])),
                  f"fetch_ohlcv {symbol} {timeframe}: 50 consecutive candles")
            check(all(r[3] <= min(r[1], r[4]) and r[2] >= max(r[1], r[4]) for r in rows), f"{symbol} {timeframe} OHLC consistent")

        if GATEWAY:
            ex.fetch_ohlcv("BTC/USDT:USDT", "1m", limit=50)
            check(ex.last_response_headers.get("X-Cache", ex.last_response_headers.get("x-cache")) in ("hit", "ws", "miss", "merged"),
                  f"a candle reply says where it came from ({ex.last_response_headers.get('X-Cache')})")

        book = ex.fetch_order_book("BTC/USDT:USDT", limit=5)
        check(len(book["bids"]) == 5 and book["bids"][0][0] < book["asks"][0][0], "fetch_order_book 5 levels, uncrossed")

        balance = ex.fetch_balance({"type": "swap"})
        check(balance["USDT"]["total"] == 10000, f"fetch_balance USDT total {balance['USDT']['total']}")
        spot = ex.fetch_balance({"type": "spot"})
        check(spot["USDT"]["free"] == 10000, f"fetch_balance spot USDT free {spot['USDT']['free']}")

        try:
            exchange(base, secret="wrong-secret").fetch_balance({"type": "swap"})
            check(False, "wrong secret must fail")
        except ccxt.AuthenticationError as error:
            check("40009" in str(error), f"wrong secret -> AuthenticationError ({str(error)[:80]})")
    finally:
        if GATEWAY and gateway is not None:
            gateway.terminate()
            gateway.wait(timeout=15)
        sim.terminate()
        sim.wait(timeout=15)

    with open(stats_path) as f:
        stats = json.load(f)
    with open(log_path) as f:
        lines = [json.loads(l) for l in f]
    check(stats["total"]["rate_limited"] == 0, "ccxt was never rate-limited on this short run")
    if GATEWAY:
        check(stats["total"]["requests"] > 0, "the simulator was reached through the gateway")
    check(len(lines) == stats["total"]["requests"], f"request log has every request ({len(lines)})")
    check(any(l["path"] == "/api/v2/mix/account/accounts" and l["code"] == "40009" for l in lines),
          "the server logged the bad signature as 40009")
    print(f"{harness.checks} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"not ok - {error}")
        print(f"{harness.checks} passed, 1 failed")
        sys.exit(1)
