#!/usr/bin/env python3
"""A real bot through the gateway: freqtrade (PyPI, unmodified but for its URLs) in front of
`bitget-poller gateway` in front of the simulator.

Runs `download-data` and `trade --dry-run` with a tiny strategy, for spot and for futures,
and checks that each worked (data files written, trades opened) without an error in its
log, and that the simulator never rate-limited anyone. Exits non-zero on the first failure.
Usage:

    python3 tests/freqtrade_gateway.py path/to/bitget-poller path/to/freqtrade [SECONDS]
"""

import glob
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile

import harness
from harness import check

BIN, FREQTRADE = sys.argv[1], sys.argv[2]
TRADE_SECONDS = int(sys.argv[3]) if len(sys.argv) > 3 else 40
# Every URL key of ccxt 4.5's bitget: a partial set leaves some calls going to Bitget.
URL_KEYS = ["spot", "mix", "user", "p2p", "broker", "margin", "common", "tax", "convert", "copy", "earn", "uta"]

STRATEGY = '''
from freqtrade.strategy import IStrategy
from pandas import DataFrame


class TinyStrategy(IStrategy):
    """Always wants in, leaves on ROI or stop: enough to open trades at once."""
    INTERFACE_VERSION = 3
    timeframe = "5m"
    minimal_roi = {"0": 0.5}
    stoploss = -0.5
    startup_candle_count = 10
    process_only_new_candles = False

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["enter_long"] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["exit_long"] = 0
        return dataframe
'''


def config(workdir, mode, gateway):
    urls = {"api": {key: gateway for key in URL_KEYS}}
    suffix = ":USDT" if mode == "futures" else ""
    cfg = {
        "max_open_trades": 2, "stake_currency": "USDT", "stake_amount": 100, "dry_run": True,
        "dry_run_wallet": 1000, "timeframe": "5m", "trading_mode": mode,
        "db_url": f"sqlite:///{workdir}/{mode}.sqlite",
        "exchange": {
            "name": "bitget", "key": "", "secret": "", "password": "",
            "ccxt_config": {"urls": urls}, "ccxt_async_config": {"urls": urls},
            "pair_whitelist": [f"BTC/USDT{suffix}", f"ETH/USDT{suffix}"],
        },
        "pairlists": [{"method": "StaticPairList"}],
        "entry_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "exit_pricing": {"price_side": "same", "use_order_book": True, "order_book_top": 1},
        "bot_name": f"gateway-{mode}", "initial_state": "running",
        "internals": {"process_throttle_secs": 5},
    }
    if mode == "futures":
        cfg["margin_mode"] = "isolated"
    path = os.path.join(workdir, f"config-{mode}.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path


def errors_in(log_path):
    with open(log_path) as f:
        return [line.strip() for line in f if " - ERROR - " in line or "Traceback" in line]


def main():
    workdir = tempfile.mkdtemp(prefix="freqtrade-gateway-")
    log_path = os.path.join(workdir, "requests.jsonl")
    stats_path = os.path.join(workdir, "stats.json")
    sim = subprocess.Popen(
        [BIN, "sim", "--addr", "127.0.0.1:0", "--symbols", "20", "--duration", "900",
         "--request-log", log_path, "--stats-json", stats_path],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    gateway = None
    try:
        sim_url = harness.announced(sim, r"listening on (http://\S+)", lines=30)
        check(sim_url is not None, f"the simulator announces its address ({sim_url})")
        gateway_config = os.path.join(workdir, "gateway.toml")
        with open(gateway_config, "w") as f:
            f.write('[poll]\nsymbols = ["BTCUSDT"]\ntickers_interval_secs = 1\n'
                    f'discovery_cache = "{workdir}/contracts.json"\n'
                    f'[logging]\ndir = "{workdir}/logs"\n[trading]\nenabled = false\n'
                    f'[store]\npath = "{workdir}/candles.sqlite"\n')
        gateway = subprocess.Popen(
            [BIN, "gateway", "--config", gateway_config, "--base-url", sim_url, "--listen", "127.0.0.1:0",
             "--duration", "900"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "RUST_LOG": "warn"})
        gateway_url = harness.announced(gateway, r"^gateway: (http://\S+)", lines=30)
        check(gateway_url is not None, f"the gateway announces its address ({gateway_url})")

        userdir = os.path.join(workdir, "user_data")
        subprocess.run([FREQTRADE, "create-userdir", "--userdir", userdir], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(userdir, "strategies", "TinyStrategy.py"), "w") as f:
            f.write(STRATEGY)

        for mode in ["spot", "futures"]:
            cfg = config(workdir, mode, gateway_url)
            log = os.path.join(workdir, f"download-{mode}.log")
            done = subprocess.run(
                [FREQTRADE, "download-data", "--config", cfg, "--userdir", userdir, "--timeframes", "5m",
                 "--days", "1", "--logfile", log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                timeout=300)
            check(done.returncode == 0, f"download-data {mode} exits 0")
            check(errors_in(log) == [], f"download-data {mode}: no error in its log {errors_in(log)[:2]}")
            pattern = "futures/*-5m-futures.feather" if mode == "futures" else "*-5m.feather"
            files = glob.glob(os.path.join(userdir, "data", "bitget", pattern))
            check(len(files) == 2, f"download-data {mode} wrote both pairs ({len(files)} files)")

            log = os.path.join(workdir, f"trade-{mode}.log")
            bot = subprocess.Popen(
                [FREQTRADE, "trade", "--config", cfg, "--userdir", userdir, "--strategy", "TinyStrategy",
                 "--logfile", log], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                bot.wait(timeout=TRADE_SECONDS)
                check(False, f"trade {mode} kept running (it exited with {bot.returncode})")
            except subprocess.TimeoutExpired:
                bot.terminate()
                bot.wait(timeout=60)
            check(errors_in(log) == [], f"trade --dry-run {mode}: no error in its log {errors_in(log)[:2]}")
            with sqlite3.connect(os.path.join(workdir, f"{mode}.sqlite")) as db:
                trades = db.execute("select count(*) from trades").fetchone()[0]
            check(trades == 2, f"trade --dry-run {mode} opened a trade on each pair ({trades})")
    finally:
        for process in [gateway, sim]:
            if process is not None:
                process.terminate()
                process.wait(timeout=20)

    with open(stats_path) as f:
        stats = json.load(f)
    with open(log_path) as f:
        paths = {json.loads(line)["path"] for line in f}
    check(stats["total"]["rate_limited"] == 0, "nobody was rate-limited by the simulator")
    check("<unknown>" not in stats["endpoints"], f"every path freqtrade called is served ({sorted(paths)})")
    print(f"{harness.checks} passed, 0 failed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"not ok - {error}")
        print(f"{harness.checks} passed, 1 failed")
        sys.exit(1)
