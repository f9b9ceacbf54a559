#!/usr/bin/env python3
"""The WebSocket feed (issue 22) at scale, measured on the release binary.

    cargo build --release
    python3 bench/feed_bench.py [--only feed3000|feed3000-confirm|feed3000-faults] \
        [--seconds 150] [--repeat 1]

Every scenario starts a fresh simulator on 127.0.0.1 (1000 USDT-M contracts, 0-30 ms of
arrival delay on every REST request, a request log) and `bitget-poller gateway`, `symbols = "all"`, timeframes 1m, 5m and 15m: 3,000 series over the WebSocket, 50
channels a socket. A bot reads the forming 1m, 5m and 15m candle of random contracts through
the gateway, 20 a second, from 20 s after the start, and records `X-Cache` and
`X-Cache-Age-Ms` (how long ago the series was last refreshed, by a push or a REST reply).

  feed3000          the simulator repeats a finished bar's final row after its close, so
                    closes are proven over the socket.
  feed3000-confirm  it does not (`--ws-no-final-bar`): every 1m close is read by REST,
                    taking turns between /candles and /history-candles, and 5m and 15m closes
                    are built from their 1m ones (one in 50 read by REST as well, to
                    compare). 330 s, the simulator's clock shifted (`--clock-offset-secs`)
                    so that a quarter-hour boundary (1000 closes of each timeframe at once)
                    falls 150 s in.
  feed3000-faults   as feed3000 for 330 s, and 1 % of sockets dropped every second
                    (`--ws-drop 0.01`), 5 s silent stalls (`--ws-stall 0.002`), and every
                    socket cut at once at 150 s (`--ws-cut-all-at-secs 150`).

Reported: holes between delivered closed candles over every series (the store's count: a
missing closed candle shows as one), how long after its close each closed candle reached the store (the feed's own
p50/p99, server clock), the age of what the bot read (p50/p99/max), REST candle requests per
second and as a share of the 20/s candle budget, 429s and WebSocket rate-limit errors,
reconnects, the poller's CPU (seconds per second) and peak RSS, and how long the stalest
series had gone without a push (`bitget_poller_feed_stalest_seconds`, read once a second).

  derive1000        1000 contracts x 1m, 5m, 15m, 1H with `[poll] derive = true`: only the
                    1000 1m channels subscribed, the rest built from them by the store, every
                    built close read from the exchange too and compared
                    (`derive_check_every = 1`); 330 s, a quarter-hour boundary 150 s in.
  ccxtpro3000       ccxt.pro 4.5 (`watch_ohlcv`, one task per series, as its users write it)
  ccxtpro3000-faults  for the same series on the same simulator, clean and with the faults
                    above: its connections, the simulator's error codes, closed candles it
                    delivered and missed, CPU and RSS (`CCXT_PYTHON` names the interpreter
                    with ccxt installed; default the CI's virtualenv).

Writes bench/results/feed.json; with --repeat, numeric figures are medians (every run listed).
"""

import argparse
import http.client
import json
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import BIN, ROOT, free_port, rss_mb, run_scenarios, start_sim, stop_sim  # noqa: E402

CANDLES = "/api/v2/mix/market/candles"
HISTORY = "/api/v2/mix/market/history-candles"
TIMEFRAMES = ("1m", "5m", "15m")


def cpu_seconds(pid):
    """User plus system CPU time of `pid` so far, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100.0
    except (OSError, IndexError, ValueError):
        return None


def bot(port, symbols, start_at, stop_at, ages, sources):
    """Reads random forming candles through the gateway, 20 a second."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while time.time() < start_at:
        time.sleep(0.1)
    next_at = time.time()
    while time.time() < stop_at:
        symbol = random.choice(symbols)
        tf = random.choice(TIMEFRAMES)
        try:
            conn.request("GET", f"{CANDLES}?symbol={symbol}&productType=USDT-FUTURES"
                                f"&granularity={tf}&limit=1")
            reply = conn.getresponse()
            reply.read()
            source = reply.getheader("X-Cache", "?")
            sources[source] = sources.get(source, 0) + 1
            age = reply.getheader("X-Cache-Age-Ms")
            if age is not None and source in ("ws", "hit"):
                ages.append(int(age))
        except (OSError, http.client.HTTPException):
            sources["error"] = sources.get("error", 0) + 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at += 0.05
        time.sleep(max(0.0, next_at - time.time()))


def quantile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def stalest(port):
    """`bitget_poller_feed_stalest_seconds` from the metrics endpoint, in ms, or None."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    except (OSError, http.client.HTTPException):
        return None
    m = re.search(r"^bitget_poller_feed_stalest_seconds (\S+)$", text, re.M)
    return round(float(m.group(1)) * 1000) if m else None


def quarter_offset(at):
    """A simulator clock offset (whole seconds, within ±450) that puts a quarter-hour
    boundary `at` seconds after now: a 15m close (with a 5m and a 1m one) inside the run."""
    now = time.time()
    boundary = (int(now) // 900 + 1) * 900
    offset = boundary - at - int(now)
    return offset - 900 if offset > 450 else offset


def scenario(sim_extra, seconds, cut_at=None, quarter_at=None,
             timeframes=TIMEFRAMES, poll_extra=""):
    def run(args, work):
        seconds_ = args.seconds or seconds
        extra = list(sim_extra)
        if quarter_at is not None:
            extra += ["--clock-offset-secs", str(quarter_offset(quarter_at))]
        sim, port, log, stats_path, _ = start_sim(1000, ["--jitter-ms", "30", *extra], work)
        gw = free_port()
        metrics = free_port()
        cfg = work / "feed.toml"
        cfg.write_text(f"""
[poll]
symbols = "all"
timeframes = [{", ".join(f'"{t}"' for t in timeframes)}]
tickers_interval_secs = 0
{poll_extra}
discovery_cache = "{work / 'cache.json'}"
[store]
path = "{work / 'candles.sqlite'}"
[logging]
dir = "{work / 'logs'}"
usage_interval_secs = 10
metrics_addr = "127.0.0.1:{metrics}"
[trading]
enabled = false
[gateway]
listen = "127.0.0.1:{gw}"
""")
        started = time.time()
        poller = subprocess.Popen(
            [str(BIN), "gateway", "--config", str(cfg), "--base-url", f"http://127.0.0.1:{port}",
             "--duration", str(seconds_)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        symbols = [f"{b}USDT" for b in ("BTC", "ETH")]
        # The contract list, for the bot: read once through the gateway when it is up.
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", gw, timeout=5)
                c.request("GET", "/api/v2/mix/market/contracts?productType=USDT-FUTURES")
                body = json.loads(c.getresponse().read())
                symbols = [d["symbol"] for d in body["data"] if d.get("symbolStatus") == "normal"]
                break
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                time.sleep(0.2)
        ages, sources = [], {}
        reader = threading.Thread(target=bot, args=(gw, symbols, started + 20,
                                                    started + seconds_ - 2, ages, sources))
        reader.start()
        cpu0 = cpu_seconds(poller.pid)
        wall0 = time.time()
        peak = 0.0
        cpu1, wall1 = cpu0, wall0
        stale = []  # (seconds since start, stalest series' age in ms), once a second
        while poller.poll() is None:
            age = stalest(metrics)
            if age is not None:
                stale.append((time.time() - started, age))
            rss = rss_mb(poller.pid)
            if rss:
                peak = max(peak, rss)
            c = cpu_seconds(poller.pid)
            if c is not None:
                cpu1, wall1 = c, time.time()
            time.sleep(1)
        out = poller.stdout.read()
        reader.join()
        stats = stop_sim(sim, stats_path)
        feed = re.search(r"delivered after their close p50 (\S+) ms p99 (\S+) ms", out)
        built = re.search(r"candles built from shorter ones (\d+), checked against the exchange's (\d+), differed (\d+)", out)
        holes = re.search(r"holes in delivered series (\d+)", out)
        rate_log = (work / "logs" / "bitget_rate_limits.log").read_text()
        session = next((l for l in rate_log.splitlines() if "event=feed_session" in l), "")
        field = lambda k: (re.search(rf"\b{k}=(\S+)", session) or [None, None])[1]
        rest = sum(stats["endpoints"].get(p, {}).get("requests", 0) for p in (CANDLES, HISTORY))
        rest_candles = stats["endpoints"].get(CANDLES, {}).get("requests", 0)
        warm = [a for t, a in stale if t >= 30]
        after_cut = [a for t, a in stale if cut_at is not None and cut_at <= t < cut_at + 60]
        return {
            "seconds": seconds_,
            # The longest any series went without a push, sampled once a second after the
            # first 30 s; and in the minute after the mass cut.
            "stalest_max_ms": max(warm) if warm else None,
            "stalest_p99_ms": quantile(warm, 0.99),
            "stalest_after_cut_max_ms": max(after_cut) if after_cut else None,
            "exit": poller.returncode,
            "channels": int(field("channels") or 0),
            "sockets": int(field("sockets") or 0),
            "close_lag_p50_ms": float(feed.group(1)) if feed and feed.group(1) != "-" else None,
            "close_lag_p99_ms": float(feed.group(2)) if feed and feed.group(2) != "-" else None,
            "holes_in_delivered_series": int(holes.group(1)) if holes else None,
            "closed_ws": int(field("closed_ws") or 0),
            "closed_rest": int(field("closed_rest") or 0),
            "closed_built": int(field("closed_built") or 0),
            "store_built": [int(built.group(i)) for i in (1, 2, 3)] if built else None,
            "build_checks_differed": field("build_mismatches"),
            "rest_reads": int(field("rest_reads") or 0),
            "reconnects": int(field("reconnects") or 0),
            "ws_errors_seen_by_poller": field("ws_errors"),
            "bot_reads": sum(sources.values()),
            "bot_sources": sources,
            "bot_age_p50_ms": quantile(ages, 0.5),
            "bot_age_p99_ms": quantile(ages, 0.99),
            "bot_age_max_ms": max(ages) if ages else None,
            "rest_candle_requests_per_s": round(rest / seconds_, 2),
            "rest_share_of_candle_budget": round(rest_candles / (20 * seconds_), 4),
            "rest_429": stats["total"]["rate_limited"],
            "ws_errors": stats["ws"]["errors"],
            "ws_connections": stats["ws"]["connections"],
            "ws_dropped": stats["ws"]["dropped"],
            "ws_expired": stats["ws"]["expired"],
            "ws_stalls": stats["ws"]["stalls"],
            "ws_max_messages_in_1s": stats["ws"]["max_messages_in_1s"],
            "cpu_s_per_s": round((cpu1 - cpu0) / max(1e-9, wall1 - wall0), 3) if cpu0 is not None else None,
            "peak_rss_mb": round(peak, 1),
        }
    return run


def ccxtpro(sim_extra, seconds):
    """ccxt.pro's `watch_ohlcv` for the same 3,000 series, against the same simulator."""
    def run(args, work):
        import os
        seconds_ = args.seconds or seconds
        python = os.environ.get("CCXT_PYTHON", "/tmp/bitget-poller-ci-venv/bin/python")
        sim, port, log, stats_path, _ = start_sim(1000, ["--jitter-ms", "30", *sim_extra], work)
        client = subprocess.run(
            [python, str(ROOT / "bench" / "ccxtpro_client.py"), str(port), str(seconds_), "1000"],
            capture_output=True, text=True, timeout=seconds_ + 300)
        stats = stop_sim(sim, stats_path)
        try:
            out = json.loads(client.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out = {"client_failed": client.stderr[-2000:]}
        out.update({
            "seconds": seconds_,
            "ws_connections": stats["ws"]["connections"],
            "ws_errors": stats["ws"]["errors"],
            "ws_subscribe_requests": stats["ws"].get("subscribe_requests"),
            "ws_dropped": stats["ws"]["dropped"],
            "ws_max_messages_in_1s": stats["ws"]["max_messages_in_1s"],
            "rest_requests": stats["total"]["requests"],
            "rest_429": stats["total"]["rate_limited"],
        })
        return out
    return run


SCENARIOS = {
    "feed3000": scenario([], 150),
    "feed3000-confirm": scenario(["--ws-no-final-bar"], 330, quarter_at=150),
    "feed3000-faults": scenario(["--ws-drop", "0.01", "--ws-stall", "0.002",
                                 "--ws-stall-secs", "5", "--ws-cut-all-at-secs", "150"], 330,
                                cut_at=150),
    "derive1000": scenario([], 330, quarter_at=150, timeframes=("1m", "5m", "15m", "1H"),
                           poll_extra="derive = true\nderive_check_every = 1"),
    "ccxtpro3000": ccxtpro([], 150),
    "ccxtpro3000-faults": ccxtpro(["--ws-drop", "0.01", "--ws-stall", "0.002",
                                   "--ws-stall-secs", "5", "--ws-cut-all-at-secs", "150"], 330),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(SCENARIOS), action="append")
    parser.add_argument("--seconds", type=int, default=0, help="length of each run")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    run_scenarios(SCENARIOS, args, ROOT / "bench" / "results" / "feed.json")


if __name__ == "__main__":
    main()
