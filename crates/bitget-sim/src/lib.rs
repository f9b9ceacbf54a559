//! A local Bitget REST v2 exchange: the server behind `demo`, every integration test, and
//! users' offline rate-limit rehearsals.
//!
//! It serves the market-data and account endpoints the poller and ccxt use, with Bitget's
//! envelopes, error codes, signing rules and strict per-second rate limits, plus seeded fault
//! injection. Everything it saw is counted ([`record`]) so clients can be judged by the
//! server's view, which is what the real exchange enforces.
//!
//! ```no_run
//! # async fn example() -> Result<(), bitget_sim::SimError> {
//! use bitget_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("Bitget simulator on {}", sim.base_url());
//! let stats = sim.stop().await;
//! println!("{} requests", stats.total.requests);
//! # Ok(()) }
//! ```

pub mod account;
pub mod auth;
pub mod codes;
pub mod endpoints;
pub mod faults;
pub mod handlers;
pub mod limits;
pub mod market;
pub mod network;
pub mod params;
pub mod record;
pub mod server;
pub mod state;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use bitget_proto::clock::Clock;
pub use bitget_proto::clock::SystemClock;
use record::StatsSnapshot;

pub use state::{
    SimConfig, SimError, SimState, DEMO_API_KEY, DEMO_API_PASSPHRASE, DEMO_API_SECRET,
};

/// A running simulator; stop it with [`Simulator::stop`] to get the final counters.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    state: Arc<SimState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts a simulator on `addr` (port 0 picks a free port) with the system clock.
    ///
    /// # Errors
    /// See [`Simulator::start_with_clock`].
    pub async fn start(config: SimConfig, addr: SocketAddr) -> Result<Self, SimError> {
        Self::start_with_clock(config, addr, Arc::new(SystemClock::new())).await
    }

    /// Starts a simulator whose notion of time is `clock`.
    ///
    /// # Errors
    /// The configuration is invalid or the address cannot be bound.
    pub async fn start_with_clock(
        config: SimConfig,
        addr: SocketAddr,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, SimError> {
        let state = Arc::new(SimState::new(config, clock)?);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let cut_all_after = state.ws.config().cut_all_after;
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                let serve = server::serve(listener, state.clone(), async {
                    let _ = shutdown_rx.await;
                });
                // The one mass disconnect, if configured, runs beside the server and ends
                // with it.
                let cut = async {
                    if let Some(after) = cut_all_after {
                        tokio::time::sleep(after).await;
                        state.ws.cut_all();
                    }
                    std::future::pending::<()>().await;
                };
                tokio::select! {
                    () = serve => {}
                    () = cut => {}
                }
            }
        });
        Ok(Self {
            addr,
            state,
            shutdown: Some(shutdown_tx),
            task: Some(task),
        })
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, to use as a client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.state.snapshot()
    }

    /// `ws://ADDR/v2/ws/public`, the socket's address.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, ws::PATH)
    }

    /// Shared state, for tests that inspect the universe or the clock.
    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish (at most 5 s), flushes the request
    /// log and returns the final counters.
    pub async fn stop(mut self) -> StatsSnapshot {
        self.shutdown_now().await;
        self.stats()
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.state.recorder.flush();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Dropping without `stop` still ends the server task; the log is flushed best-effort.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.state.recorder.flush();
    }
}
