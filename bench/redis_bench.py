#!/usr/bin/env python3
"""One budget across processes (Redis) and several egress addresses: issue 15's targets.

    cargo build --release
    python3 bench/redis_bench.py [--seconds 40] [--only NAME] [--repeat N] [--jitter-ms 30]

Every scenario starts a fresh simulator (strict sliding one-second windows per client IP,
market 20/s, 0-30 ms arrival jitter by default) and, where it says so, a private
`redis-server` (Debian's package) on a free loopback port, then `run` processes with a
live-mode config on 200 contracts. Utilization is accepted candle replies per second over
the limit (20/s per egress address), from the simulator's request log (what the server
saw), over the steady state: 5 s after the last instance started to 1 s before the end.
CPU per reply is user+system time of the poller processes (wait4's rusage) over the
candle replies they got. Scenarios:
  local3    three instances on one IP, each with its own (local) limiter: today
  redis3    the same three sharing one budget through Redis
  outage    redis3, with Redis stopped 1/3 into the run for 10 s and started again
  egress4   one instance with 4 egress addresses (127.0.0.2-5 as local addresses)
  wide2     1000 symbols x 1m/5m/15m in closed mode with 2 egresses, 150 s
Writes bench/results/redis.json (or --out).
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import BIN, CANDLES, ROOT, free_port, read_log, start_sim, stop_sim  # noqa: E402
import network_bench  # noqa: E402
from network_bench import candles_ok, limited, median_of, per_s  # noqa: E402


class Redis:
    """A private redis-server on a free loopback port, no persistence."""

    def __init__(self, work):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.work = work
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


def config(work, name, *, redis=None, instances=3, egresses=(), mode="live", symbols='"all"',
           timeframes=("1m",)):
    """network_bench's config, sharing through `redis` and leaving from `egresses`."""
    limits = ""
    if redis:
        limits = f"""[limits]
backend = "redis"
redis_url = "{redis.url}"
redis_expected_instances = {instances}
"""
    egress = "".join(f'[[egress]]\nlocal_address = "{a}"\n' for a in egresses)
    return network_bench.config(work, name, mode=mode, symbols=symbols, timeframes=timeframes,
                                extra=limits + egress)


def start_poller(cfg, port, seconds):
    return subprocess.Popen(
        [str(BIN), "run", "--config", str(cfg), "--base-url", f"http://127.0.0.1:{port}",
         "--duration", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RUST_LOG": "warn"})


def reap(proc):
    """Waits for `proc`; its stdout, stderr and CPU seconds."""
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return out, err, usage.ru_utime + usage.ru_stime


def max_in_1s(rows, key=lambda r: r["client"]):
    """The most accepted candle replies of one client address in any sliding second."""
    best = 0
    by = {}
    for r in rows:
        by.setdefault(key(r), []).append(r["ts"])
    for times in by.values():
        times.sort()
        j = 0
        for i, t in enumerate(times):
            while times[j] <= t - 1000:
                j += 1
            best = max(best, i - j + 1)
    return best


def several(args, work, redis, count, stagger=1.0, outage=None):
    seconds = args.seconds
    sim, port, log, stats_path, start = start_sim(200, args.sim_args, work)
    procs = []
    for i in range(count):
        procs.append(start_poller(config(work, f"p{i}", redis=redis, instances=count), port, seconds))
        time.sleep(stagger)
    outage_at = None
    if outage:
        time.sleep(max(0.0, start + outage[0] - time.time()))
        outage_at = time.time()
        redis.stop()
        time.sleep(outage[1])
        redis.start()
    reaped = [reap(p) for p in procs]
    stop_sim(sim, stats_path)
    rows = read_log(log)
    start_ms = int(start * 1000)
    t0 = start_ms + int(stagger * count * 1000) + 5000
    t1 = start_ms + seconds * 1000 - 1000
    ok = candles_ok(rows)
    cpu = sum(c for _, _, c in reaped)
    result = {
        "sim_args": " ".join(args.sim_args),
        "instances": count,
        "seconds_measured": (t1 - t0) / 1000.0,
        "utilization_together": per_s(ok, t0, t1) / 20.0,
        "rate_limited": len(limited(rows)),
        "max_accepted_in_1s": max_in_1s(ok),
        "cpu_ms_per_candle_reply": 1000.0 * cpu / max(1, len(ok)),
        "exit_codes": [p.returncode for p in procs],
    }
    if outage_at:
        down_ms = int(outage_at * 1000)
        up_ms = down_ms + int(outage[1] * 1000)
        # From the end of the hold after the outage is noticed to its end.
        result["utilization_during_outage"] = per_s(ok, down_ms + 2000, up_ms) / 20.0
        result["utilization_after_outage"] = per_s(ok, up_ms + 8000, t1) / 20.0 if t1 > up_ms + 9000 else None
        result["fallback_share_total"] = count * (20 // count) / 20.0
        result["rate_limited_during_outage"] = sum(1 for r in limited(rows) if down_ms <= r["ts"] < up_ms + 10_000)
        result["redis_down_lines"] = sum(err.count("redis_down") + out.count("redis_down") for out, err, _ in reaped)
    return result


def scenario_local3(args, work):
    return several(args, work, None, 3)


def scenario_redis3(args, work):
    redis = Redis(work)
    try:
        return several(args, work, redis, 3)
    finally:
        redis.stop()


def scenario_outage(args, work):
    redis = Redis(work)
    try:
        return several(args, work, redis, 3, outage=(args.seconds // 3, 10.0))
    finally:
        redis.stop()


def egress_run(args, work, addresses, symbols, mode, timeframes, seconds):
    sim, port, log, stats_path, start = start_sim(symbols, args.sim_args, work)
    cfg = config(work, "e", egresses=addresses, mode=mode, timeframes=timeframes)
    proc = start_poller(cfg, port, seconds)
    out, err, cpu = reap(proc)
    stop_sim(sim, stats_path)
    rows = read_log(log)
    start_ms = int(start * 1000)
    return rows, out, err, cpu, start_ms, proc.returncode


def scenario_egress4(args, work):
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    rows, out, err, cpu, start_ms, code = egress_run(args, work, addresses, 200, "live", ("1m",), args.seconds)
    ok = candles_ok(rows)
    t0, t1 = start_ms + 5000, start_ms + args.seconds * 1000 - 1000
    by_ip = {a: per_s([r for r in ok if r["client"] == a], t0, t1) for a in addresses}
    return {
        "sim_args": " ".join(args.sim_args),
        "egresses": len(addresses),
        "accepted_candles_per_s": per_s(ok, t0, t1),
        "target_per_s": 3.8 * 20,
        "per_egress_per_s": by_ip,
        "rate_limited": len(limited(rows)),
        "max_accepted_in_1s_per_ip": max_in_1s(ok),
        "exit_code": code,
    }


def scenario_wide2(args, work):
    addresses = ["127.0.0.2", "127.0.0.3"]
    rows, out, err, cpu, start_ms, code = egress_run(
        args, work, addresses, 1000, "closed", ("1m", "5m", "15m"), 150)
    stale = re.search(r"stale streams (\d+)", out)
    ok = candles_ok(rows)
    return {
        "sim_args": " ".join(args.sim_args),
        "egresses": len(addresses),
        "requests": len(rows),
        "rate_limited": len(limited(rows)),
        "max_accepted_in_1s_per_ip": max_in_1s(ok),
        "stale_streams_at_exit": int(stale.group(1)) if stale else None,
        "exit_code": code,
    }


SCENARIOS = {
    "local3": scenario_local3,
    "redis3": scenario_redis3,
    "outage": scenario_outage,
    "egress4": scenario_egress4,
    "wide2": scenario_wide2,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--only", choices=list(SCENARIOS), action="append")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--jitter-ms", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "redis.json"))
    args = parser.parse_args()
    args.sim_args = ["--jitter-ms", str(args.jitter_ms)] if args.jitter_ms else []
    if not BIN.exists():
        sys.exit(f"{BIN} is missing; run cargo build --release first")
    results = {"machine": f"{os.cpu_count()} cpus, {os.uname().sysname} {os.uname().machine}",
               "command": " ".join(sys.argv), "scenarios": {}}
    for name in args.only or list(SCENARIOS):
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(SCENARIOS[name](args, Path(tmp)))
        results["scenarios"][name] = median_of(runs)
        print(name, json.dumps(results["scenarios"][name]), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
