#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds (default 60), seeded with the repository's Bitget fixtures and
# the repository's configs. Needs: cargo install cargo-fuzz; a nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
mkdir -p corpus/replies corpus/config corpus/strategy_file corpus/rate_log
cp ../tests/fixtures/bitget/recorded/*.json ../tests/fixtures/bitget/doc-examples/*.json corpus/replies/
cp ../config/*.toml ../tests/configs/bad/*.toml corpus/config/
cp ../strategies/*.toml corpus/strategy_file/
for log in ../tests/data/usage/bitget_rate_limits.log* ../docs/sample/*.log; do
    cp "$log" "corpus/rate_log/$(echo "${log#../}" | tr / _)"
done
for target in replies config strategy_file rate_log; do
    cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=4096
done
