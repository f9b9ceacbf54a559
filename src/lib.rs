//! # bitget-poller
//!
//! A market-data poller for Bitget v2 that spends the whole rate budget without being
//! rejected, plus a faithful local Bitget simulator to build, test and rehearse against.
//!
//! Layout, in layers that only point down (a test, `tests/poller/layers.rs`, reads the
//! `use` lines of every file and fails on an upward or circular import):
//! - [`core`]: symbols, the one `Timeframe` type (every Bitget spelling of a period),
//!   candles, tickers, events, the injected clock and the process's one `ServerClock`,
//!   longer candles built exactly from shorter ones (`derive`),
//!   shared diagnostics, and the bounded accept loop our own listeners (gateway, metrics)
//!   run. Depends on nothing else here.
//! - [`limiter`]: admission in the server's frame, one window per endpoint as Bitget
//!   meters them (plus an optional category cap and the overall per-IP minute), keyed by
//!   scope (clock-offset bounds from `requestTime`, which it publishes as the server clock,
//!   windows of arrivals indexed by leave time, the share beside other clients, backoff,
//!   recent 429s), pure, under an async shell; or the same windows in Redis, shared by
//!   every instance on any host, with a local fallback share. Knows nothing of Bitget's
//!   paths.
//! - [`store`]: the in-memory source of truth for candles and tickers (newest N, ranges by
//!   time, holes, what was delivered and repeats dropped), a journal subscribers catch up
//!   from, a lossless write-through hook for a persistent backend, freshness (every watched
//!   series' age) and the interest: which series clients want kept fresh; and `disk`, the
//!   SQLite file every closed candle is kept in (one writer thread, WAL, lossless through
//!   a full disk), which restarts, the gateway and `export` read.
//! - [`bitget`]: the venue adapter — endpoint table, codes, signing, wire shapes, parsing,
//!   the query structs the client writes and the gateway reads, the reply envelopes, the
//!   raw HTTP layer (`forward`), the egress addresses and proxies it leaves from, the
//!   typed client, and its own configuration sections.
//! - [`scheduler`]: what to request next, a pure core on explicit time (the limiter's
//!   server clock) under a thin async shell; it writes into the store, reads from it where
//!   each series stands, and follows its interest. `backfill` plans and fetches the
//!   ranges the candle file lacks.
//! - [`feed`]: live candles over Bitget's WebSocket, closes proven exactly (by a row pushed
//!   after the close, by REST through the limiter, or built from a shorter timeframe's),
//!   gaps filled by REST.
//! - [`strategy`]: pure strategies over core types.
//! - [`telemetry`]: log files, rate-usage lines, the `usage` report, Prometheus metrics.
//! - [`trading`]: the engine, paper book and live orders.
//! - [`gateway`]: the local Bitget-compatible endpoint other bots point at: each request
//!   made canonical first, market data from the store, everything else forwarded
//!   unchanged, all through the one limiter.
//! - [`config`]: reads and checks the file, composing each owner's section.
//! - [`app`]: [`app::run`] owns every long-lived task under one cancellation path.
//! - [`cli`]: the command line; `main.rs` only calls [`cli::main`].
//!
//!
//! The simulator is its own crate (`crates/bitget-sim`), an independent oracle that shares
//! only what the protocol fixes (timeframes, signing, the injectable clock: the
//! `crates/bitget-proto` crate) with the poller; the compiler keeps it from reaching more.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod app;
pub mod bitget;
pub mod cli;
pub mod config;
pub mod core;
pub mod feed;
pub mod gateway;
pub mod limiter;
pub mod scheduler;
pub mod store;
pub mod strategy;
pub mod telemetry;
pub mod trading;
