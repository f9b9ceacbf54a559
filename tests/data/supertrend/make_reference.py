#!/usr/bin/env python3
"""Reference SuperTrend values and SuperTrend-pullback signals for candles.csv.

Independent of the Rust code: the ATR comes from TA-Lib (the published C library, through
its Python wrapper), the bands and trend follow TradingView's `ta.supertrend` as published in
the Pine reference, and the signal rules are transcribed from the strategy's documentation
(src/strategy/supertrend.rs module doc). Floats (IEEE doubles) throughout, so the Rust
Decimal results are compared with a relative tolerance.

    pip install TA-Lib==0.8.2 numpy
    python3 tests/data/supertrend/make_reference.py > tests/data/supertrend/reference.csv

candles.csv: 999 closed BTCUSDT 1m candles from the built-in simulator (seed 1), captured
with `bitget-poller sim` and `GET /api/v2/mix/market/candles?limit=1000`.
"""
import csv
import math
import sys
from pathlib import Path

import numpy as np
import talib

ATR_PERIOD = 10
MULTIPLIER = 2.5
PULLBACK_PCT = 0.2
STOP_PCT = 0.3

rows = list(csv.DictReader(open(Path(__file__).with_name("candles.csv"))))
t = [int(r["open_time"]) for r in rows]
o, h, l, c = (np.array([float(r[k]) for r in rows]) for k in ("open", "high", "low", "close"))
atr = talib.ATR(h, l, c, timeperiod=ATR_PERIOD)

out = csv.writer(sys.stdout, lineterminator="\n")
out.writerow(["open_time", "atr", "upper", "lower", "trend", "line", "signal"])
prev = None  # (upper, lower, line, up)
position, stop = "flat", 0.0
for i in range(len(rows)):
    if math.isnan(atr[i]):
        continue
    hl2 = (h[i] + l[i]) / 2
    upper = hl2 + MULTIPLIER * atr[i]
    lower = hl2 - MULTIPLIER * atr[i]
    if prev is None:
        up = False
    else:
        p_upper, p_lower, p_line, p_up = prev
        if not (lower > p_lower or c[i - 1] < p_lower):
            lower = p_lower
        if not (upper < p_upper or c[i - 1] > p_upper):
            upper = p_upper
        if p_line == p_upper:
            up = c[i] > upper
        else:
            up = not (c[i] < lower)
    line = lower if up else upper
    signal = ""
    if prev is not None:
        p_up = prev[3]
        if position == "long":
            if l[i] <= stop:
                position, signal = "flat", "flat:stop"
            elif not up:
                position, signal = "flat", "flat:trend flip"
        elif position == "short":
            if h[i] >= stop:
                position, signal = "flat", "flat:stop"
            elif up:
                position, signal = "flat", "flat:trend flip"
        else:
            zone = line * PULLBACK_PCT / 100
            if up and p_up and l[i] <= line + zone and c[i] > line and c[i] > o[i]:
                position, signal = "long", "long:pullback in uptrend"
                stop = c[i] * (100 - STOP_PCT) / 100
            elif not up and not p_up and h[i] >= line - zone and c[i] < line and c[i] < o[i]:
                position, signal = "short", "short:pullback in downtrend"
                stop = c[i] * (100 + STOP_PCT) / 100
    prev = (upper, lower, line, up)
    out.writerow([t[i], repr(float(atr[i])), repr(float(upper)), repr(float(lower)), "up" if up else "down", repr(float(line)), signal])
