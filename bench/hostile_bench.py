#!/usr/bin/env python3
"""The gateway against the hostile and unlucky clients of the newcomer's report
(../shared/newcomer-2026-12-03.md, rows 1, 2, 3, 5 and 6), measured on the release binary.

Every server is on 127.0.0.1: the simulator (200 contracts, 0-30 ms of arrival delay, a
request log) and `bitget-poller gateway` polling 20 configured symbols in live mode, so the
poller alone spends the whole 20/s candle budget.

- bypass: 100 candle GETs at 10/s on `/api/v2/x/../mix/market/candles`, 50 on `%2e%2e`
  paths, plus `/api/../sim/stats`: upstream 429s and paths the exchange saw outside /api/v2.
- fakes: 2000 candle GETs for symbols Bitget does not list, through 300 threads: upstream
  requests for them, the longest gap between two BTCUSDT polls, the most configured series
  stale at once.
- unknown: 2000 distinct 4 KB and 2000 distinct 16 KB unknown paths through 200 threads:
  RSS and log growth.
- idle: the gateway under `ulimit -n 1024`, 1100 idle connections, a normal client GETting
  every 100 ms: how many it got, latency median and max.
- sigterm: a half-sent request head and body open, then SIGTERM: time to exit.

    cargo build --release
    python3 bench/hostile_bench.py [--repeat 3]

Writes bench/results/hostile.json (each figure the median of the runs, and every run).
"""

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import BIN, ROOT, announced, free_port, median_of, rss_mb  # noqa: E402

SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "DOGEUSDT", "ADAUSDT", "LINKUSDT",
           "AVAXUSDT", "DOTUSDT", "LTCUSDT", "BCHUSDT", "TRXUSDT", "UNIUSDT", "ATOMUSDT",
           "NEARUSDT", "APTUSDT", "ARBUSDT", "OPUSDT", "FILUSDT", "SUIUSDT"]


class Setup:
    """The simulator and a gateway, torn down by stop()."""

    def __init__(self, tmp, ulimit=None):
        self.tmp = tmp
        self.log = tmp / "requests.jsonl"
        self.stats = tmp / "stats.json"
        self.sim = subprocess.Popen(
            [str(BIN), "sim", "--addr", "127.0.0.1:0", "--symbols", "200", "--jitter-ms", "30",
             "--request-log", str(self.log), "--stats-json", str(self.stats)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.sim_url = announced(self.sim, r"listening on (http://\S+)")
        self.port = free_port()
        config = tmp / "gateway.toml"
        symbols = ", ".join(f'"{s}"' for s in SYMBOLS)
        config.write_text(f'[poll]\nsymbols = [{symbols}]\ntickers_interval_secs = 0\n'
                          f'[store]\npath = "{tmp}/candles.sqlite"\n'
                          f'[logging]\ndir = "{tmp}/logs"\nusage_interval_secs = 5\n'
                          f'[trading]\nenabled = false\n'
                          f'[feed]\nsource = "rest"\n'
                          f'[gateway]\nlisten = "127.0.0.1:{self.port}"\n')
        args = [str(BIN), "gateway", "--config", str(config), "--base-url", self.sim_url]
        if ulimit:
            args = ["sh", "-c", f'ulimit -n {ulimit} && exec "$0" "$@"'] + args
        self.out = open(tmp / "gateway.out", "w")
        self.gateway = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT,
                                        env={**os.environ, "RUST_LOG": "warn"})
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(2)  # past the poller's first round

    def get(self, target, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request("GET", target)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def stop(self):
        self.gateway.terminate()
        started = time.time()
        self.gateway.wait(timeout=60)
        took = time.time() - started
        self.sim.terminate()
        self.sim.wait(timeout=30)
        self.out.close()
        return took

    def requests(self):
        rows = []
        for line in self.log.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
        return rows

    def sim_stats(self):
        return json.loads(self.stats.read_text())


def candles(symbol, extra=""):
    return f"symbol={symbol}&productType=USDT-FUTURES&granularity=5m&limit=1{extra}"


def bypass(tmp):
    s = Setup(tmp)
    statuses = {}
    t0 = time.time()
    threads = []
    for i in range(150):
        path = "/api/v2/x/../mix/market/candles" if i < 100 else "/api/v2/x/%2e%2e/mix/market/candles"
        target = f"{path}?{candles('ETHUSDT', f'&startTime={i}')}"
        t = threading.Thread(target=lambda t=target: statuses.setdefault(t, s.get(t)[0]))
        t.start()
        threads.append(t)
        time.sleep(max(0.0, t0 + (i + 1) / 10 - time.time()))
    for t in threads:
        t.join()
    outside = [s.get(p)[0] for p in ["/api/../sim/stats", "/api/%2e%2e/sim/stats"]]
    s.stop()
    rows = s.requests()
    return {
        "upstream_429": s.sim_stats()["total"]["rate_limited"],
        "answered_200": sum(1 for v in statuses.values() if v == 200),
        "refused_locally_429": sum(1 for v in statuses.values() if v == 429),
        "outside_api_status": outside,
        "upstream_paths_outside_api_v2": sum(1 for r in rows if not r["path"].startswith("/api/v2/")),
    }


def fakes(tmp):
    s = Setup(tmp)
    t0 = time.time() * 1000
    with ThreadPoolExecutor(300) as pool:
        codes = list(pool.map(lambda i: s.get(f"/api/v2/mix/market/candles?{candles(f'ZZ{i:05}USDT')}")[0],
                              range(2000)))
    flood_end = time.time() * 1000
    time.sleep(20)  # what the flood leaves behind
    s.stop()
    rows = s.requests()
    btc = sorted(r["ts"] for r in rows if r.get("symbol") == "BTCUSDT" and r["ts"] >= t0)
    gaps = [b - a for a, b in zip(btc, btc[1:])]
    stale = [int(m.group(1)) for m in re.finditer(r"event=stale_summary stale=(\d+)",
                                                   (tmp / "logs" / "bitget_rate_limits.log").read_text())]
    return {
        "fake_requests_upstream": sum(1 for r in rows if (r.get("symbol") or "").startswith("ZZ")),
        "fake_answered_by_bitget_40034": codes.count(400),
        "fake_refused_locally_429": codes.count(429),
        "flood_seconds": round((flood_end - t0) / 1000, 1),
        "btcusdt_longest_gap_ms": max(gaps) if gaps else None,
        "most_configured_stale_at_once": max(stale) if stale else 0,
    }


def unknown(tmp):
    s = Setup(tmp)
    pid = s.gateway.pid
    before = rss_mb(pid)
    unified = tmp / "logs" / "trading_unified.log"
    log_before = unified.stat().st_size
    out = {}
    for size in (4000, 16000):
        filler = "a" * size
        with ThreadPoolExecutor(200) as pool:
            codes = list(pool.map(lambda i: s.get(f"/api/v2/unknown/{size}-{i}/{filler}")[0], range(2000)))
        out[f"status_{size // 1000}kb"] = {str(c): codes.count(c) for c in sorted(set(codes))}
    after = rss_mb(pid)
    log_after = unified.stat().st_size
    s.stop()
    out.update({
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rss_growth_mb": round(after - before, 1),
        "unified_log_growth_kb": round((log_after - log_before) / 1024, 1),
    })
    return out


def idle(tmp):
    s = Setup(tmp, ulimit=1024)
    held = []
    for _ in range(1100):
        try:
            held.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
        except OSError:
            break
    latencies, served = [], 0
    for _ in range(50):
        started = time.time()
        try:
            status, body = s.get("/api/v2/public/time", timeout=5)
            if status == 200:
                served += 1
                latencies.append((time.time() - started) * 1000)
        except OSError:
            pass
        time.sleep(0.1)
    for h in held:
        h.close()
    s.stop()
    return {
        "idle_connections_opened": len(held),
        "normal_requests_served_of_50": served,
        "latency_median_ms": round(statistics.median(latencies), 1) if latencies else None,
        "latency_max_ms": round(max(latencies), 1) if latencies else None,
    }


def sigterm(tmp):
    s = Setup(tmp)
    head = socket.create_connection(("127.0.0.1", s.port))
    head.sendall(b"GET /api/v2/public/time HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    body = socket.create_connection(("127.0.0.1", s.port))
    body.sendall(b"POST /api/v2/mix/order/place-order HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    time.sleep(0.5)
    took = s.stop()
    head.close()
    body.close()
    return {"exit_after_sigterm_s": round(took, 2), "exit_code": s.gateway.returncode}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", action="append")
    args = parser.parse_args()
    scenarios = {"bypass": bypass, "fakes": fakes, "unknown": unknown, "idle": idle, "sigterm": sigterm}
    results = {}
    for name, run in scenarios.items():
        if args.only and name not in args.only:
            continue
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(run(Path(tmp)))
        results[name] = {"median": median_of(runs), "runs": runs}
        print(name, json.dumps(results[name]["median"]), flush=True)
    results["machine"] = f"{os.cpu_count()} cores, " + os.uname().machine
    results["command"] = "python3 bench/hostile_bench.py " + " ".join(sys.argv[1:])
    (ROOT / "bench" / "results" / "hostile.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
