use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitget_poller::app::{run_session, RunSummary};
use bitget_poller::config::Config;
use bitget_poller::core::clock::{Clock, SystemClock};
use bitget_poller::core::events::MarketEvent;
use bitget_poller::sim::{SimConfig, Simulator};
use bitget_poller::store::Store;
use tokio_util::sync::CancellationToken;

/// A config for `base_url` with `poll` (the body of the `[poll]` table) and extra tables.
pub fn config(base_url: &str, poll: &str, extra: &str) -> Config {
    let text = format!(
        "[exchange]\nbase_url = \"{base_url}\"\n[poll]\n{poll}\n[logging]\nusage_interval_secs = 1\n{extra}\n"
    );
    Config::parse(&text, Path::new("test.toml")).expect("test config is valid")
}

pub async fn simulator(config: SimConfig) -> Simulator {
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

/// Everything a session produced.
pub struct Run {
    pub summary: RunSummary,
    pub events: Vec<MarketEvent>,
    pub log: String,
}

/// Runs a session for `duration` with a consumer that keeps up, capturing the log.
pub async fn run_for(config: &Config, duration: Duration) -> Run {
    run_with_clock(config, duration, Arc::new(SystemClock::new())).await
}

pub async fn run_with_clock(config: &Config, duration: Duration, wall: Arc<dyn Clock>) -> Run {
    let capture = LogCapture::default();
    let _guard = capture.install();
    let store = Store::new(config.store);
    let mut rx = store.subscribe();
    let stop = CancellationToken::new();
    let collector = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(event) = rx.recv().await {
            events.push(event);
        }
        events
    });
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            stop.cancel();
        })
    };
    let summary = run_session(config, wall, store, stop)
        .await
        .expect("session runs");
    stopper.await.unwrap();
    let events = collector.await.unwrap();
    Run {
        summary,
        events,
        log: capture.text(),
    }
}

/// Closed candles received, by symbol, as open times.
pub fn closed_by_symbol(events: &[MarketEvent]) -> std::collections::BTreeMap<String, Vec<u64>> {
    let mut out = std::collections::BTreeMap::<String, Vec<u64>>::new();
    for event in events {
        if let MarketEvent::CandleClosed(c) = event {
            assert!(c.closed);
            out.entry(c.symbol.to_string())
                .or_default()
                .push(c.open_time);
        }
    }
    out
}

/// Captures formatted log lines of the current thread.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `bitget-poller` binary this test run built.
pub fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_bitget-poller"))
}

/// An empty directory of this test's own under cargo's test scratch space.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
