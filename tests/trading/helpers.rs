use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitget_poller::bitget::client::Client;
use bitget_poller::bitget::credential::{Credentials, Signer};
use bitget_poller::bitget::http::ClientConfig;
use bitget_poller::core::clock::{Clock, SystemClock};
use bitget_poller::core::market::Symbol;
use bitget_poller::limiter::backoff::Backoff;
use bitget_poller::limiter::{Limits, LocalLimiter};
use bitget_poller::strategy::{Intent, Target};
use bitget_poller::telemetry::RecentRateLimits;
use bitget_sim::{SimConfig, Simulator, DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub fn demo_credentials() -> Credentials {
    Credentials::new(DEMO_API_KEY, DEMO_API_SECRET, DEMO_API_PASSPHRASE)
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bitget-trading-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn simulator_with_clock(config: SimConfig, clock: Arc<dyn Clock>) -> Simulator {
    Simulator::start_with_clock(config, "127.0.0.1:0".parse().unwrap(), clock)
        .await
        .expect("simulator starts")
}

pub async fn simulator(config: SimConfig) -> Simulator {
    simulator_with_clock(config, Arc::new(SystemClock::new())).await
}

/// A client for `sim` signing with `credentials`, with a fast backoff so tests stay short.
pub fn signed_client(sim: &Simulator, credentials: Credentials) -> Client {
    let config = ClientConfig {
        base_url: sim.base_url(),
        backoff: Backoff {
            base: Duration::from_millis(100),
            max_retries: 3,
            cap: Duration::from_secs(2),
        },
        ..ClientConfig::default()
    };
    let limiter = Arc::new(LocalLimiter::new(&Limits::default(), config.backoff));
    let client = Client::new(
        &config,
        limiter,
        Arc::new(RecentRateLimits::default()),
        CancellationToken::new(),
    )
    .unwrap();
    client.with_signer(Arc::new(Signer::new(credentials)))
}

/// An intent on a candle that closed a moment ago, so it is traded, not taken as warm-up.
pub fn intent(symbol: &str, target: Target, price: &str) -> Intent {
    let now = SystemClock::new().now_ms();
    Intent {
        symbol: Symbol::from_exchange(symbol),
        target,
        reason: "test",
        candle_open_time: now / 60_000 * 60_000 - 60_000,
        decided_at_price: price.parse().unwrap(),
    }
}

/// The simulator's request log as `(path, status, code, fault)`, in arrival order.
pub fn request_log(path: &std::path::Path) -> Vec<(String, u64, String, Option<String>)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["path"].as_str().unwrap().to_owned(),
                v["status"].as_u64().unwrap(),
                v["code"].as_str().unwrap_or("").to_owned(),
                v["fault"].as_str().map(str::to_owned),
            )
        })
        .collect()
}
