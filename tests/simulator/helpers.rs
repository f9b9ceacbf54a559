//! Starting simulators and talking to them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitget_poller::bitget::credential::Credentials;
use bitget_poller::core::clock::ManualClock;
use bitget_sim::{SimConfig, Simulator};
use serde_json::Value;

/// 2025-06-15T12:00:00.250Z: mid-second, so "same second" tests have room on both sides.
pub const T0: u64 = 1_750_000_000_250;

/// Bitget replies and documentation examples, copied into the repository.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bitget")
}

/// Reads a fixture as JSON.
pub fn fixture(relative: &str) -> Value {
    let path = fixtures().join(relative);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// A simulator on a free port with a manual clock at [`T0`].
pub async fn start(config: SimConfig) -> (Simulator, ManualClock) {
    let clock = ManualClock::new(T0);
    let sim = Simulator::start_with_clock(
        config,
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Arc::new(clock.clone()),
    )
    .await
    .expect("simulator starts");
    (sim, clock)
}

/// A client that talks to loopback without proxies.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A client whose requests come from another loopback address (another "IP").
pub fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(ip)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One reply: status, the remain header, body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub remain: Option<u32>,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.body))
    }

    /// The body's `code`.
    pub fn code(&self) -> String {
        self.json()["code"]
            .as_str()
            .expect("code is a string")
            .to_owned()
    }
}

/// GET `path_and_query` from `sim`.
pub async fn get(client: &reqwest::Client, sim: &Simulator, path_and_query: &str) -> Reply {
    let response = client
        .get(format!("{}{path_and_query}", sim.base_url()))
        .send()
        .await
        .expect("request completes");
    to_reply(response).await
}

pub async fn to_reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let remain = response.headers().get("x-mbx-used-remain-limit").map(|v| {
        v.to_str()
            .unwrap()
            .parse()
            .expect("remain header is a number")
    });
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Reply {
        status,
        remain,
        content_type,
        body: response.text().await.expect("body reads"),
    }
}

/// Sends requests signed with one key, as Bitget expects, stamped with a fixed time.
#[derive(Debug)]
pub struct Signer<'a> {
    pub http: reqwest::Client,
    pub sim: &'a Simulator,
    pub creds: Credentials,
    pub timestamp: u64,
}

impl<'a> Signer<'a> {
    /// Signs as `creds` at [`T0`].
    pub fn new(sim: &'a Simulator, creds: &Credentials) -> Self {
        Self {
            http: client(),
            sim,
            creds: creds.clone(),
            timestamp: T0,
        }
    }

    /// A signed GET; `query` without `?`.
    pub async fn get(&self, path: &str, query: &str) -> Reply {
        self.send("GET", path, query, "").await
    }

    /// A signed POST of `body`, exactly as given.
    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.send("POST", path, "", body).await
    }

    async fn send(&self, method: &str, path: &str, query: &str, body: &str) -> Reply {
        let ts = self.timestamp.to_string();
        let sign = self.creds.sign(&ts, method, path, query, body.as_bytes());
        let base = self.sim.base_url();
        let url = if query.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}?{query}")
        };
        let request = match method {
            "POST" => self
                .http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_owned()),
            _ => self.http.get(url),
        };
        let response = request
            .header("ACCESS-KEY", &self.creds.api_key)
            .header("ACCESS-SIGN", sign)
            .header("ACCESS-TIMESTAMP", ts)
            .header("ACCESS-PASSPHRASE", &self.creds.passphrase)
            .send()
            .await
            .expect("request completes");
        to_reply(response).await
    }
}

pub const CANDLES: &str =
    "/api/v2/mix/market/candles?symbol=BTCUSDT&productType=USDT-FUTURES&granularity=1m&limit=5";

/// A candle's prices and volumes as Bitget writes them in a row (fields 1 to 6), to compare
/// a candle read by the poller with the exchange's own row.
pub fn row_of(c: &bitget_poller::core::market::Candle) -> Vec<String> {
    [
        c.open,
        c.high,
        c.low,
        c.close,
        c.base_volume,
        c.quote_volume,
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}
