#!/usr/bin/env python3
"""ccxt.pro watching candles from the simulator the way ccxt.pro users write it: one task
per series looping `watch_ohlcv`, retrying a second after an error, every URL pointed at
the simulator and nothing else changed.

    /tmp/ccxt-venv/bin/python bench/ccxtpro_client.py PORT SECONDS SYMBOLS [TIMEFRAMES...]

Prints one JSON line: series watched, candles closed per series as ccxt.pro delivered them,
closed candles it never delivered (every minute boundary a series' watch saw on both
sides, with the bar between missing from what it returned), errors by kind, CPU seconds
per second and peak RSS of this process.
"""
import asyncio
import json
import resource
import sys
import time

import ccxt.pro as ccxtpro

PERIOD_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}


async def watch(ex, symbol, timeframe, end, seen, errors):
    """Every open time (and the row last seen for it) ccxt.pro returns for one series."""
    rows = seen.setdefault((symbol, timeframe), {})
    while time.time() < end:
        try:
            ohlcv = await asyncio.wait_for(ex.watch_ohlcv(symbol, timeframe), end - time.time())
        except asyncio.TimeoutError:
            return
        except Exception as e:  # noqa: BLE001 - what a ccxt.pro user catches
            kind = f"{type(e).__name__}: {str(e)[:80]}"
            errors[kind] = errors.get(kind, 0) + 1
            await asyncio.sleep(1)
            continue
        for row in ohlcv:
            rows[row[0]] = row


async def main(port, seconds, n_symbols, timeframes):
    base = f"http://127.0.0.1:{port}"
    ex = ccxtpro.bitget({"options": {"defaultType": "swap"}})
    ws = f"ws://127.0.0.1:{port}/v2/ws/public"
    for name, url in list(ex.urls["api"].items()):
        ex.urls["api"][name] = base if isinstance(url, str) else {k: ws for k in url}
    ex.options["fetchMarkets"] = {"types": ["swap"]}
    await ex.load_markets()
    symbols = [s for s, m in ex.markets.items() if m.get("swap") and m.get("quote") == "USDT"]
    symbols = symbols[:n_symbols]
    seen, errors = {}, {}
    start = time.time()
    end = start + seconds
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*[watch(ex, s, tf, end, seen, errors)
                           for s in symbols for tf in timeframes])
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        await ex.close()
    except Exception:  # noqa: BLE001
        pass
    closed = missing = 0
    empty = 0
    for (symbol, tf), rows in seen.items():
        if not rows:
            empty += 1
            continue
        period = PERIOD_MS[tf]
        opens = sorted(rows)
        # Closed: every bar before the newest one returned. Missing: a bar between the
        # first and the newest that never came back.
        first, last = opens[0], opens[-1]
        want = (last - first) // period
        have = len([o for o in opens if o < last])
        closed += have
        missing += max(0, want - have)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(json.dumps({
        "series": len(symbols) * len(timeframes),
        "series_never_delivered": empty,
        "closed_delivered": closed,
        "closed_missing": missing,
        "errors": errors,
        "cpu_s_per_s": round(cpu / seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    port, seconds, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    tfs = sys.argv[4:] or ["1m", "5m", "15m"]
    asyncio.run(main(port, seconds, n, tfs))
