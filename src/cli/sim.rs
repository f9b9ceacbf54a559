//! `bitget-poller sim`: the simulator on its own, and its summary table.

use std::process::ExitCode;
use std::time::Duration;

use super::args::SimArgs;
use super::stop::wait_for_stop;
use bitget_sim::record::StatsSnapshot;
use bitget_sim::{SimError, Simulator, DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET};

pub(super) async fn serve(args: SimArgs) -> ExitCode {
    let clock = std::sync::Arc::new(args.clock());
    let (config, addr, duration, stats_json) = args.into_config();
    let sim = match Simulator::start_with_clock(config, addr, clock).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("error: {error}");
            // A taken port, like every listener's: the operator picks another (exit 2).
            return ExitCode::from(match error {
                SimError::RequestLog { .. } => 1,
                _ => 2,
            });
        }
    };
    let base = sim.base_url();
    outln!("Bitget v2 simulator listening on {base}");
    outln!("  try: curl '{base}/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=5'");
    outln!("  counters: {base}/sim/stats   demo key: {DEMO_API_KEY} / {DEMO_API_SECRET} / {DEMO_API_PASSPHRASE}");
    let stopped_by = wait_for_stop(duration.map(Duration::from_secs)).await;
    tracing::info!(reason = stopped_by, "simulator stopping");
    let stats = sim.stop().await;
    print_summary(&stats);
    if let Some(path) = stats_json {
        let written = serde_json::to_vec_pretty(&stats)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&path, json));
        if let Err(error) = written {
            eprintln!("error: cannot write stats to {}: {error}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn print_summary(stats: &StatsSnapshot) {
    outln!("{}", render_sim_summary(stats));
}

pub(super) fn render_sim_summary(stats: &StatsSnapshot) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "simulator summary after {:.1} s:\n  {:<44} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8}",
        stats.elapsed_ms as f64 / 1_000.0,
        "endpoint",
        "requests",
        "accepted",
        "429s",
        "errors",
        "faults",
        "max/1s"
    );
    for (path, e) in stats
        .endpoints
        .iter()
        .chain(std::iter::once((&"total".to_owned(), &stats.total)))
    {
        let _ = write!(
            out,
            "\n  {:<44} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8}",
            path, e.requests, e.accepted, e.rate_limited, e.errors, e.faults, e.max_accepted_in_1s
        );
    }
    let ws = &stats.ws;
    if ws.connections + ws.refused_sockets + ws.refused_attempts > 0 {
        let errors = if ws.errors.is_empty() {
            "none".to_owned()
        } else {
            ws.errors
                .iter()
                .map(|(code, n)| format!("{code}:{n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let _ = write!(
            out,
            "\n  websocket: {} connections (at most {} open, {} refused), {} channels subscribed in {} requests, {} pushes, most messages from one socket in 1 s {}, error events {}, closed for age {}, for no ping {}, dropped by faults {}",
            ws.connections,
            ws.max_open,
            ws.refused_sockets + ws.refused_attempts,
            ws.subscribed,
            ws.subscribe_requests,
            ws.pushes,
            ws.max_messages_in_1s,
            errors,
            ws.expired,
            ws.ping_timeouts,
            ws.dropped
        );
    }
    out
}

pub(super) fn init_console_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
