use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitget_poller::app::{run_session, RunSummary};
use bitget_poller::config::Config;
use bitget_poller::core::clock::{Clock, SystemClock};
use bitget_poller::core::events::MarketEvent;
use bitget_poller::store::Store;
use bitget_sim::{SimConfig, Simulator};
use tokio_util::sync::CancellationToken;

/// A config for `base_url` with `poll` (the body of the `[poll]` table) and extra tables.
/// A configuration for `base_url`; candles come from REST polling unless `extra` has a
/// `[feed]` section.
pub fn config(base_url: &str, poll: &str, extra: &str) -> Config {
    let feed = if extra.contains("[feed]") {
        ""
    } else {
        "[feed]\nsource = \"rest\"\n"
    };
    // Memory only unless the test names a file: never the repository's `data/`.
    let store = if extra.contains("[store]") {
        ""
    } else {
        "[store]\npath = \"\"\n"
    };
    let text = format!(
        "[exchange]\nbase_url = \"{base_url}\"\n[poll]\n{poll}\n[logging]\nusage_interval_secs = 1\n{feed}{store}{extra}\n"
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

/// A loopback port nothing listens on (free when this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server` on a free loopback port, without persistence; killed when
/// dropped. The binary is `$REDIS_SERVER` or `redis-server` on the `PATH`.
pub struct RedisServer {
    child: Option<std::process::Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    pub fn start(name: &str) -> Self {
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            dir: temp_dir(&format!("redis-{name}")),
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The size of the sorted set at `key`, read straight from the server.
    pub fn zcard(&self, key: &str) -> u64 {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut conn = client.get_connection().expect("redis up");
        redis::cmd("ZCARD")
            .arg(key)
            .query(&mut conn)
            .expect("ZCARD")
    }

    /// Kills it at once (SIGKILL): no goodbye to connected clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, empty, and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let child = std::process::Command::new(&binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} ({e}): install Debian's redis-server package (bash .ci/test does), or set REDIS_SERVER to its path")
            });
        self.child = Some(child);
        for _ in 0..250 {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::Read;
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{binary} did not answer PING on port {} within 5 s",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
