#!/usr/bin/env python3
"""freqtrade `download-data` twice through the gateway (the second with --erase): the
upstream candle requests each caused, read from the simulator's live counters.

    cargo build --release
    python3 bench/freqtrade_repeat.py [path/to/freqtrade]

Needs ccxt importable by the python running it only through freqtrade's own venv; the
default freqtrade is the CI's (`$TMPDIR/bitget-poller-ci-freqtrade/bin/freqtrade`).
"""
import json, os, re, subprocess, sys, tempfile, time
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
FT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("TMPDIR", "/tmp"), "bitget-poller-ci-freqtrade", "bin", "freqtrade")
BIN = str(ROOT / "target" / "release" / "bitget-poller")
sys.argv = ["x", BIN, FT]
import harness  # noqa: E402
import freqtrade_gateway as fg  # noqa: E402
w = tempfile.mkdtemp(prefix="ftrep-")
log = os.path.join(w, "req.jsonl")
sim = subprocess.Popen([BIN, "sim", "--addr", "127.0.0.1:0", "--symbols", "20", "--request-log", log],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
sim_url = harness.announced(sim, r"listening on (http://\S+)", lines=30)
gcfg = os.path.join(w, "g.toml")
open(gcfg, "w").write('[poll]\nsymbols = ["BTCUSDT"]\ntickers_interval_secs = 1\n'
                      f'discovery_cache = "{w}/c.json"\n[logging]\ndir = "{w}/logs"\n[trading]\nenabled = false\n'
                      f'[store]\npath = "{w}/candles.sqlite"\n')
gw = subprocess.Popen([BIN, "gateway", "--config", gcfg, "--base-url", sim_url, "--listen", "127.0.0.1:0",
                       "--duration", "600"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
gurl = harness.announced(gw, r"^gateway: (http://\S+)", lines=30)
ud = os.path.join(w, "ud")
subprocess.run([FT, "create-userdir", "--userdir", ud], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
cfg = fg.config(w, "futures", gurl)
def candles_upstream():
    import urllib.request
    stats = json.loads(urllib.request.urlopen(sim_url + "/sim/stats").read())
    return sum(v.get("requests", 0) for k, v in stats["endpoints"].items() if "candles" in k)
results = []
for attempt in (1, 2):
    before = candles_upstream()
    args = [FT, "download-data", "--config", cfg, "--userdir", ud, "--timeframes", "5m", "--days", "1"]
    if attempt == 2:
        args.append("--erase")
    t = time.time()
    d = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    time.sleep(0.5)
    results.append({"attempt": attempt, "exit": d.returncode, "upstream_candle_requests": candles_upstream() - before, "seconds": round(time.time() - t, 1)})
gw.terminate(); gw.wait(); sim.terminate(); sim.wait()
print(json.dumps(results))
