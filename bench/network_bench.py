#!/usr/bin/env python3
"""bitget-poller on a real network: arrival jitter, server pauses, a limit that moves, and
other clients on the same IP. Issue 12's targets.

    cargo build --release
    python3 bench/network_bench.py [--seconds 40] [--only NAME] [--ccxt /tmp/ccxt-venv/bin/python]

Each scenario starts a fresh simulator (strict sliding one-second windows per client IP,
market 20/s, `--jitter-ms` arrival delays drawn per request) and one or more `run`
processes with the same live-mode config on 200 contracts (tickers every 10 s). Utilization
is accepted candle replies per second over the limit, from the simulator's request log (what
the server saw), over the steady state: from 2 s after the first request to 1 s before the
end. Scenarios:
  steady      no jitter
  jitter30    0-30 ms arrival jitter
  jitter80    0-80 ms arrival jitter
  stalls      0-30 ms jitter and a 100-200 ms server pause every 3 s
  drop        0-30 ms jitter, market limit 20 -> 5 -> 20 at 1/3 and 2/3 of the run
  two         two instances on one IP, 0-30 ms jitter, the second 2 s after the first;
              measured from 10 s after both started
  wide        1000 symbols x 1m/5m/15m in closed mode, 0-30 ms jitter, 150 s: more work
              than the budget, which must still never be rejected
  ccxt30      ccxt alone with 0-30 ms jitter (needs --ccxt)
  ccxtpair    bitget-poller beside ccxt on one IP, 0-30 ms jitter (needs --ccxt)
Writes bench/results/network.json.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import (BIN, CANDLES, ROOT, limited, median_of, per_s, read_log,  # noqa: E402,F401
                     run_scenarios, start_sim, stop_sim)

JITTER30 = ["--jitter-ms", "30"]


def config(work, name, mode="live", symbols='"all"', timeframes=('1m',), extra=""):
    """A `run` config named `name` in `work`; `extra` is appended as it is (more tables)."""
    cfg = work / f"{name}.toml"
    tfs = ", ".join(f'"{t}"' for t in timeframes)
    cfg.write_text(f"""
[poll]
symbols = {symbols}
timeframes = [{tfs}]
mode = "{mode}"
tickers_interval_secs = 10
discovery_cache = "{work / (name + '-cache.json')}"
[store]
path = "{work / (name + '-candles.sqlite')}"
[logging]
dir = "{work / (name + '-logs')}"
usage_interval_secs = 5
[trading]
enabled = false
{'' if '[feed]' in extra else '[feed]' + chr(10) + 'source = "rest"'}
{extra}
""")
    return cfg


def start_poller(cfg, port, seconds):
    return subprocess.Popen(
        [str(BIN), "run", "--config", str(cfg), "--base-url", f"http://127.0.0.1:{port}",
         "--duration", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "RUST_LOG": "warn"})


def start_ccxt(python, port, seconds):
    return subprocess.Popen([python, str(ROOT / "bench" / "ccxt_client.py"), str(port), str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def candles_ok(rows):
    return [r for r in rows if r["path"] == CANDLES and r["status"] == 200 and r["code"] == "00000"]


def usage_lines(logs_dir):
    """(end time ms, market requests) of each usage line of one poller."""
    out = []
    for path in sorted(Path(logs_dir).glob("bitget_rate_limits.log*")):
        for line in path.read_text().splitlines():
            if "event=usage" not in line or "category=market" not in line:
                continue
            stamp = line.split()[0]
            ts = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            ms = int(ts * 1000) + int(stamp[20:23])
            req = int(re.search(r"requests=(\d+)", line).group(1))
            interval = int(re.search(r"interval_ms=(\d+)", line).group(1))
            out.append((ms, req, interval))
    return out


def share_from_usage(logs_dir, t0, t1, limit=20.0):
    """Market requests per second over the limit, from usage intervals ending in [t0, t1]."""
    rows = [(end, req, iv) for end, req, iv in usage_lines(logs_dir) if t0 + 5000 <= end <= t1]
    total_ms = sum(iv for _, _, iv in rows)
    return sum(req for _, req, _ in rows) / (total_ms / 1000.0) / limit if total_ms else 0.0


def one(args, work, sim_args, seconds=None, symbols=200):
    seconds = seconds or args.seconds
    sim, port, log, stats_path, start = start_sim(symbols, sim_args, work)
    proc = start_poller(config(work, "a"), port, seconds)
    proc.wait()
    stats = stop_sim(sim, stats_path)
    rows = read_log(log)
    t0 = min(r["ts"] for r in rows) + 2000
    t1 = int(start * 1000) + seconds * 1000 - 1000
    return rows, stats, t0, t1, int(start * 1000)


def scenario_simple(sim_args):
    def run(args, work):
        rows, stats, t0, t1, _ = one(args, work, sim_args)
        return {
            "sim_args": " ".join(sim_args),
            "utilization": per_s(candles_ok(rows), t0, t1) / 20.0,
            "rate_limited": len(limited(rows)),
            "max_accepted_in_1s": stats["endpoints"][CANDLES]["max_accepted_in_1s"],
        }
    return run


def scenario_drop(args, work):
    third = args.seconds // 3
    sim_args = JITTER30 + ["--market-limit-schedule", f"20,{third}:5,{2 * third}:20"]
    rows, _, t0, t1, start = one(args, work, sim_args)
    drop, rise = start + third * 1000, start + 2 * third * 1000
    bad = limited(rows)
    ok = candles_ok(rows)
    return {
        "sim_args": " ".join(sim_args),
        "429_before_drop": sum(1 for r in bad if r["ts"] < drop - 500),
        "429_at_drop": sum(1 for r in bad if drop - 500 <= r["ts"] < rise - 500),
        "429_at_rise": sum(1 for r in bad if r["ts"] >= rise - 500),
        "util_of_5_from_3s_after_drop": per_s(ok, drop + 3000, rise) / 5.0,
        "util_of_20_from_3s_after_rise": per_s(ok, rise + 3000, t1) / 20.0,
    }


def scenario_two(args, work):
    seconds = max(args.seconds, 70)
    sim, port, log, stats_path, start = start_sim(200, JITTER30, work)
    a = start_poller(config(work, "a"), port, seconds)
    time.sleep(2)
    b = start_poller(config(work, "b"), port, seconds)
    a.wait()
    b.wait()
    stop_sim(sim, stats_path)
    rows = read_log(log)
    start_ms = int(start * 1000)
    t0, t1 = start_ms + 2000 + 10_000, start_ms + seconds * 1000
    bad = [r for r in limited(rows) if t0 <= r["ts"] < t1]
    minutes = (t1 - t0) / 60_000.0
    return {
        "sim_args": " ".join(JITTER30),
        "seconds_measured": (t1 - t0) / 1000.0,
        "utilization_together": per_s(candles_ok(rows), t0, t1) / 20.0,
        "share_a": share_from_usage(work / "a-logs", t0, t1),
        "share_b": share_from_usage(work / "b-logs", t0, t1),
        "rate_limited_per_minute": len(bad) / minutes,
        "rate_limited_first_10s": sum(1 for r in limited(rows) if r["ts"] < t0),
    }


def scenario_wide(args, work):
    seconds = 150
    sim, port, log, stats_path, start = start_sim(1000, JITTER30, work)
    proc = start_poller(config(work, "a", mode="closed", timeframes=("1m", "5m", "15m")), port, seconds)
    out, _ = proc.communicate()
    stats = stop_sim(sim, stats_path)
    rows = read_log(log)
    stale = re.search(r"stale streams (\d+)", out)
    return {
        "sim_args": " ".join(JITTER30),
        "requests": len(rows),
        "rate_limited": len(limited(rows)),
        "max_accepted_in_1s": stats["endpoints"][CANDLES]["max_accepted_in_1s"],
        "stale_streams_at_exit": int(stale.group(1)) if stale else None,
    }


def scenario_ccxt(pair):
    def run(args, work):
        if not args.ccxt:
            return {"skipped": "needs --ccxt PYTHON with ccxt installed"}
        sim, port, log, stats_path, start = start_sim(100, JITTER30, work)
        c = start_ccxt(args.ccxt, port, args.seconds)
        p = start_poller(config(work, "a"), port, args.seconds) if pair else None
        out, _ = c.communicate()
        if p:
            p.wait()
        stop_sim(sim, stats_path)
        rows = read_log(log)
        t0 = min(r["ts"] for r in rows) + 5000
        t1 = int(start * 1000) + args.seconds * 1000 - 1000
        ccxt = json.loads(out.strip().splitlines()[-1])
        result = {
            "sim_args": " ".join(JITTER30),
            "utilization_all": per_s(candles_ok(rows), t0, t1) / 20.0,
            "rate_limited_all": len(limited(rows)),
            "ccxt_replies": ccxt["replies"],
            "ccxt_errors": ccxt["errors"],
        }
        if pair:
            result["poller_share"] = share_from_usage(work / "a-logs", t0, t1)
            poller_429 = sum(1 for line in (work / "a-logs" / "bitget_rate_limits.log").read_text().splitlines()
                             if "event=rate_limited" in line)
            result["poller_rate_limited"] = poller_429
        return result
    return run


SCENARIOS = {
    "steady": scenario_simple([]),
    "jitter30": scenario_simple(JITTER30),
    "jitter80": scenario_simple(["--jitter-ms", "80"]),
    "stalls": scenario_simple(JITTER30 + ["--stall-ms", "100-200", "--stall-every", "3"]),
    "drop": scenario_drop,
    "two": scenario_two,
    "wide": scenario_wide,
    "ccxt30": scenario_ccxt(False),
    "ccxtpair": scenario_ccxt(True),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--only", choices=list(SCENARIOS), action="append")
    parser.add_argument("--ccxt", help="a python with ccxt installed, for the ccxt scenarios")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per scenario; numeric figures are reported as their median")
    args = parser.parse_args()
    run_scenarios(SCENARIOS, args, ROOT / "bench" / "results" / "network.json")


if __name__ == "__main__":
    main()
