#!/usr/bin/env python3
"""ccxt polling the simulator the way ccxt users write it: enableRateLimit on, one
asyncio.gather over every symbol per iteration, 100-row 1m candles.

    python3 bench/ccxt_client.py PORT SECONDS

Prints one JSON line: polling CPU seconds (after markets are loaded), replies and errors.
"""
import asyncio
import json
import resource
import sys
import time

import ccxt.async_support as ccxt


async def main(port, seconds):
    base = f"http://127.0.0.1:{port}"
    ex = ccxt.bitget({"enableRateLimit": True, "options": {"defaultType": "swap"}})
    ex.urls["api"] = {name: base for name in ex.urls["api"]}
    await ex.load_markets()
    symbols = [s for s, m in ex.markets.items() if m.get("swap") and m.get("quote") == "USDT"]
    start_cpu = resource.getrusage(resource.RUSAGE_SELF)
    replies = errors = iterations = 0
    error_kinds = {}
    end = time.time() + seconds
    while time.time() < end:
        results = await asyncio.gather(
            *[ex.fetch_ohlcv(s, "1m", limit=100) for s in symbols], return_exceptions=True)
        iterations += 1
        for r in results:
            if isinstance(r, Exception):
                errors += 1
                kind = type(r).__name__
                error_kinds[kind] = error_kinds.get(kind, 0) + 1
            else:
                replies += 1
    end_cpu = resource.getrusage(resource.RUSAGE_SELF)
    await ex.close()
    print(json.dumps({
        "symbols": len(symbols),
        "iterations": iterations,
        "replies": replies,
        "errors": errors,
        "error_kinds": error_kinds,
        "polling_cpu_s": (end_cpu.ru_utime - start_cpu.ru_utime) + (end_cpu.ru_stime - start_cpu.ru_stime),
        "ccxt_version": ccxt.__version__,
    }))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
