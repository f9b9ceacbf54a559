//! # bitget-poller
//!
//! A market-data poller for Bitget v2 that spends the whole rate budget without being
//! rejected, plus a faithful local Bitget simulator to build, test and rehearse against.
//!
//! Layout:
//! - [`credential`]: API keys and Bitget's HMAC request signature (shared by client and
//!   simulator).
//! - [`error`]: the self-classifying Bitget error and its code tables (for the poller).
//! - [`retry`]: the backoff schedule (for the poller).
//! - [`limiter`]: admission in the server's frame (clock-offset bounds from `requestTime`,
//!   windows of arrivals, the share beside other clients), pure, under an async shell.
//! - [`sim`]: the local Bitget REST v2 simulator (`bitget-poller sim`).
//! - [`cli`]: the command line; `main.rs` only calls [`cli::main`].

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod credential;
pub mod discovery;
pub mod error;
pub mod granularity;
pub mod limiter;
pub mod metrics;
pub mod models;
pub mod parse;
pub mod retry;
pub mod runner;
pub mod scheduler;
pub mod sim;
pub mod strategy;
pub mod telemetry;
pub mod trading;
pub mod usage;
