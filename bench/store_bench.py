#!/usr/bin/env python3
"""The candle file (issue 23) end to end, on the release binary.

    cargo build --release
    python3 bench/store_bench.py [--only backfill30d|backfill-resume|restart200] [--repeat 1]

Every scenario starts a fresh simulator on 127.0.0.1 (0-30 ms of arrival delay on every
request, a request log).

  backfill30d      `bitget-poller backfill` of 30 days of 1m for 10 contracts (432,000
                   rows, 2,160 pages of 200) into the same candle file a live poller of 200
                   contracts (`run`, live mode, /candles) is writing: wall time, pages,
                   rows, 429s.
  backfill-resume  the same backfill (no poller) interrupted with SIGINT once half its
                   pages are in, then run again: pages fetched in all (every page once
                   means the two runs' /history-candles requests add up to the plan).
  restart200       `gateway` on 200 contracts x 1m, 5m, 15m over REST (closed mode) for
                   65 s, stopped and started again on the same file with the simulator's
                   clock 10 minutes further on (a restart after 10 minutes): upstream candle
                   requests per series in the second run's first minute, and how soon
                   after its start the gateway answered every series from what it held.

Writes bench/results/store.json; with --repeat, numeric figures are medians.
"""

import argparse
import http.client
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import BIN, ROOT, free_port, run_scenarios, start_sim, stop_sim  # noqa: E402

HISTORY = "/api/v2/mix/market/history-candles"
CANDLES = "/api/v2/mix/market/candles"


def write_config(work, name, symbols, timeframes=("1m",), extra="", mode="live"):
    cfg = work / f"{name}.toml"
    tfs = ", ".join(f'"{t}"' for t in timeframes)
    cfg.write_text(f"""
[poll]
symbols = {symbols}
timeframes = [{tfs}]
mode = "{mode}"
tickers_interval_secs = 0
discovery_cache = "{work / 'cache.json'}"
[feed]
source = "rest"
[store]
path = "{work / 'candles.sqlite'}"
[logging]
dir = "{work / (name + '-logs')}"
usage_interval_secs = 10
[trading]
enabled = false
{extra}
""")
    return cfg


def requests(log, path, since_line=0):
    count, lines = 0, 0
    with open(log) as f:
        for i, line in enumerate(f):
            lines = i + 1
            if i >= since_line and f'"path":"{path}"' in line:
                count += 1
    return count, lines


def backfill(cfg, port, symbols, extra_args=(), interrupt_at=None):
    args = [str(BIN), "backfill", "--config", str(cfg), "--base-url", f"http://127.0.0.1:{port}",
            "--symbols", ",".join(symbols), "--timeframes", "1m", "--since", "30d", *extra_args]
    started = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if interrupt_at is not None:
        # Plain progress lines (not a terminal): interrupt once half the pages are in.
        for line in proc.stderr:
            parts = line.split()
            if line.startswith("backfill:") and "/" in parts[1]:
                done, total = (int(x) for x in parts[1].split("/"))
                if total and done >= total * interrupt_at:
                    proc.send_signal(signal.SIGINT)
                    break
    out, err = proc.communicate(timeout=900)
    return proc.returncode, time.time() - started, out, err


def symbols_of(port, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/v2/mix/market/contracts?productType=USDT-FUTURES")
    data = json.loads(c.getresponse().read())["data"]
    return [d["symbol"] for d in data][:n]


def backfill30d(args, work):
    sim, port, log, stats_path, _ = start_sim(200, ["--jitter-ms", "30"], work)
    ten = symbols_of(port, 10)
    poller_cfg = write_config(work, "poller", '"all"')
    poller = subprocess.Popen([str(BIN), "run", "--config", str(poller_cfg), "--base-url",
                               f"http://127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(15)  # the poller past its first reads, at its usual rate
    _, before = requests(log, HISTORY)
    candles0, _ = requests(log, CANDLES)
    code, seconds, out, err = backfill(write_config(work, "backfill", '["BTCUSDT"]'), port, ten)
    candles1, _ = requests(log, CANDLES)
    poller.send_signal(signal.SIGINT)
    poller.wait(timeout=60)
    stats = stop_sim(sim, stats_path)
    pages, _ = requests(log, HISTORY, before)
    rows = sum(int(l.split(": ")[1].split()[0]) for l in out.splitlines() if "candles held" in l)
    return {
        "exit": code,
        "seconds": round(seconds, 1),
        "pages": pages,
        "rows_held_after": rows,
        "poller_candle_requests_per_s_meanwhile": round((candles1 - candles0) / seconds, 2),
        "rate_limited": stats["total"]["rate_limited"],
        "summary": out.strip().splitlines()[:1],
    }


def backfill_resume(args, work):
    sim, port, log, stats_path, _ = start_sim(20, ["--jitter-ms", "30"], work)
    ten = symbols_of(port, 10)
    cfg = write_config(work, "backfill", '["BTCUSDT"]')
    code1, s1, out1, _ = backfill(cfg, port, ten, interrupt_at=0.5)
    pages1, lines = requests(log, HISTORY)
    code2, s2, out2, _ = backfill(cfg, port, ten)
    total, _ = requests(log, HISTORY)
    stats = stop_sim(sim, stats_path)
    rows = sum(int(l.split(": ")[1].split()[0]) for l in out2.splitlines() if "candles held" in l)
    return {
        "first_exit": code1,
        "first_pages": pages1,
        "second_exit": code2,
        "second_pages": total - pages1,
        "pages_in_all": total,
        "rows_held_after": rows,
        "seconds": round(s1 + s2, 1),
        "rate_limited": stats["total"]["rate_limited"],
    }


def restart200(args, work):
    results = {}
    offset = 0
    # What the probe asks for: closed bars before this (simulator) time. Run 1: from 15
    # minutes ago; run 2: before the quarter hour run 1 started in (its first reads stored
    # them all; a bar still forming when run 1 stopped is not in the file).
    probe_end = None
    run1_start = None
    for run in (1, 2):
        here = work / f"sim{run}"
        here.mkdir()
        sim, port, log, stats_path, _ = start_sim(
            200, ["--jitter-ms", "30", "--clock-offset-secs", str(offset)], here)
        gw = free_port()
        cfg = write_config(work, "gateway", '"all"', ("1m", "5m", "15m"),
                           f'[gateway]\nlisten = "127.0.0.1:{gw}"\n', mode="closed")
        started = time.time()
        # Bars opening before a quarter hour ahead of run 1's start were closed, and read by
        # its first reads, before it started: every timeframe's are in the file.
        run1_start = run1_start or int((started + offset) * 1000) // 900_000 * 900_000
        proc = subprocess.Popen([str(BIN), "gateway", "--config", str(cfg), "--base-url",
                                 f"http://127.0.0.1:{port}", "--duration", "65"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        symbols = None
        while symbols is None and time.time() < started + 30:
            try:
                symbols = symbols_of(port, 200)
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                time.sleep(0.1)
        # Every series answered from what the gateway holds (X-Cache hit), from the start.
        pending = {(s, tf) for s in symbols for tf in ("1m", "5m", "15m")}
        served_at = None
        conn = None
        sources = {}
        while pending and time.time() < started + 60:
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", gw, timeout=5)
                for s, tf in list(pending):
                    conn.request("GET", f"{CANDLES}?symbol={s}&productType=USDT-FUTURES"
                                        f"&granularity={tf}&limit=5&startTime=0&endTime="
                                        f"{probe_end or int((time.time() + offset - 900) * 1000)}")
                    reply = conn.getresponse()
                    reply.read()
                    source = reply.getheader("X-Cache")
                    sources[source] = sources.get(source, 0) + 1
                    if source in ("hit", "ws", "disk"):
                        pending.discard((s, tf))
            except (OSError, http.client.HTTPException):
                conn = None
                time.sleep(0.05)
        served_at = time.time() - started if not pending else None
        proc.wait(timeout=120)
        probe_end = run1_start
        stats = stop_sim(sim, stats_path)
        first_minute = 0
        history_reads = 0
        t0 = None
        with open(log) as f:
            for line in f:
                r = json.loads(line)
                if r["path"] in (CANDLES, HISTORY):
                    t0 = t0 or r["ts"]
                    if r["ts"] - t0 < 60_000:
                        first_minute += 1
                    # A first read of a series' history asks for `initial_candles` (100).
                    if (r.get("limit") or 0) >= 50:
                        history_reads += 1
        results[f"run{run}"] = {
            # Run 2's include the reads of bars that closed within that minute.
            "candle_requests_first_minute": first_minute,
            "history_reads": history_reads,
            "per_series": round(first_minute / 600, 2),
            "all_600_series_served_after_s": round(served_at, 2) if served_at else None,
            "probe_answers": sources,
            "rate_limited": stats["total"]["rate_limited"],
        }
        offset += 600  # ten minutes later, by the simulator's clock
    return results


SCENARIOS = {
    "backfill30d": backfill30d,
    "backfill-resume": backfill_resume,
    "restart200": restart200,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(SCENARIOS), action="append")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    run_scenarios(SCENARIOS, args, ROOT / "bench" / "results" / "store.json")


if __name__ == "__main__":
    main()
