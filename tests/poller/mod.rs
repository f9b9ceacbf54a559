//! Integration tests of the poller against the built-in simulator over real HTTP.
//!
//! These run in real time for a few seconds each, on a current-thread runtime so the
//! test's log capture sees every task. They assert what the server saw (429s, busiest
//! second, requests per symbol) and what consumers received, never how fast it happened;
//! throughput is the benchmark's job.

mod bad_configs;
mod binary;
mod faults;
mod feed;
mod fixtures;
mod gateway;
mod helpers;
mod hostile;
mod layers;
mod limits;
mod modes;
mod persist;
mod shared;
mod telemetry;
