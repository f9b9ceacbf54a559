//! The accept loop of our own listeners (the gateway, the metrics endpoint): HTTP/1.1 only,
//! with bounded connections and a shutdown that ends.
//!
//! `axum::serve` has no connection cap, no header-read or idle timeout (hyper's needs a
//! timer it does not set, and hyper's own one also closes idle keep-alive connections at
//! the same deadline as half-sent heads), and its graceful shutdown waits for every
//! connection without a deadline, so one client holding half a request kept the process
//! alive after SIGTERM. This loop is hyper-util under an axum router, like the
//! simulator's, with:
//! - a cap on open connections: at the cap the connection with the oldest activity and
//!   no request in progress is closed to make room (an idle keep-alive or a half-sent head
//!   costs nothing to drop, and a well-behaved bot's new connection is always served);
//!   only when every connection has a request in progress is the newcomer refused, with
//!   the caller's reply written before the socket closes;
//! - a header-read timeout (bytes of a request head arrived, the head did not complete)
//!   and a longer idle timeout (nothing sent since the last reply), both counted from
//!   what the socket actually read, checked on a coarse tick;
//! - at shutdown, connections without a request in progress are closed at once and the
//!   rest get `grace` before they are dropped.
//!
//! Only HTTP/1.1 is spoken: an HTTP/2 prior-knowledge preface is refused by hyper.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// What one listener allows a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From the first byte of a request head to its end.
    pub header_timeout: Duration,
    /// From the end of a reply (or the connection's start) to the next byte.
    pub idle_timeout: Duration,
    /// How long requests in progress get at shutdown.
    pub grace: Duration,
    /// Largest request head (request line and headers) read, in bytes.
    pub max_head_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            grace: Duration::from_secs(5),
            max_head_bytes: 64 << 10,
        }
    }
}

/// What the loop did to clients, cumulative; read for the logs.
#[derive(Debug, Default)]
pub struct ServeCounters {
    /// Closed at the cap to make room for a newer connection.
    pub evicted: AtomicU64,
    /// Refused at the cap, every connection having a request in progress.
    pub refused: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub idle_timeouts: AtomicU64,
}

impl ServeCounters {
    /// `(evicted, refused, header_timeouts, idle_timeouts)`.
    pub fn shed(&self) -> [u64; 4] {
        [
            self.evicted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.header_timeouts.load(Ordering::Relaxed),
            self.idle_timeouts.load(Ordering::Relaxed),
        ]
    }
}

/// One connection's activity, as the accept loop judges it.
#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
    kill: Notify,
}

#[derive(Debug, Clone, Copy)]
struct SlotState {
    /// Requests handed to the router and not yet answered.
    busy: u32,
    /// When the last reply was made (or the connection opened).
    idle_since: Instant,
    /// When the first byte of a head not yet complete arrived.
    head_since: Option<Instant>,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(SlotState {
                busy: 0,
                idle_since: now,
                head_since: None,
            }),
            kill: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_bytes(&self) {
        let mut state = self.state();
        if state.busy == 0 && state.head_since.is_none() {
            state.head_since = Some(Instant::now());
        }
    }

    fn enter(self: &Arc<Self>) -> Busy {
        let mut state = self.state();
        state.busy += 1;
        state.head_since = None;
        Busy(Arc::clone(self))
    }
}

/// A request in progress on a slot; dropping it marks the connection idle again.
struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.busy = state.busy.saturating_sub(1);
        state.idle_since = Instant::now();
    }
}

/// The socket, noting on its slot when request bytes arrive.
struct Watched {
    stream: TcpStream,
    slot: Arc<Slot>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.slot.read_bytes();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why a connection was closed by the loop, for its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    HeaderTimeout,
    IdleTimeout,
}

/// Whether a connection in `state` is past a deadline at `now` (pure, for tests).
fn judge(state: SlotState, limits: &ServeLimits, now: Instant) -> Verdict {
    if state.busy > 0 {
        return Verdict::Keep;
    }
    match state.head_since {
        Some(since) if now.duration_since(since) >= limits.header_timeout => Verdict::HeaderTimeout,
        Some(_) => Verdict::Keep,
        None if now.duration_since(state.idle_since) >= limits.idle_timeout => Verdict::IdleTimeout,
        None => Verdict::Keep,
    }
}

/// The connections open, by id.
#[derive(Debug, Default)]
struct Table {
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the connection with no request in progress whose last activity is oldest;
    /// false when every connection is busy.
    fn evict_one(&self) -> bool {
        let slots = self.lock();
        let oldest = slots
            .values()
            .filter_map(|slot| {
                let state = *slot.state();
                (state.busy == 0).then(|| (state.head_since.unwrap_or(state.idle_since), slot))
            })
            .min_by_key(|(at, _)| *at);
        match oldest {
            Some((_, slot)) => {
                slot.kill.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `router` on `listener` under `limits` until `stop`; `refusal` is the whole HTTP
/// reply written to a connection refused at the cap.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    refusal: Arc<[u8]>,
    counters: Arc<ServeCounters>,
    stop: CancellationToken,
) {
    let table = Arc::new(Table::default());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    let tick_every = (limits.header_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                sweep(&table, &limits, &counters);
                continue;
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors, usually: make room rather than spin.
                    if table.evict_one() {
                        counters.evicted.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tracing::warn!(%error, "cannot accept a connection");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if table.lock().len() >= limits.max_connections {
            if table.evict_one() {
                counters.evicted.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                let refusal = Arc::clone(&refusal);
                connections.spawn(async move {
                    let mut stream = stream;
                    let write = async {
                        let _ = stream.write_all(&refusal).await;
                        let _ = stream.shutdown().await;
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
                });
                continue;
            }
        }
        let id = next_id;
        next_id += 1;
        let slot = Arc::new(Slot::new(Instant::now()));
        table.lock().insert(id, Arc::clone(&slot));
        let service = {
            let router = router.clone();
            let slot = Arc::clone(&slot);
            hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let router = router.clone();
                let busy = slot.enter();
                async move {
                    let mut request = request.map(Body::new);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let response = router.oneshot(request).await;
                    drop(busy);
                    response
                }
            })
        };
        let io = TokioIo::new(Watched {
            stream,
            slot: Arc::clone(&slot),
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .max_buf_size(limits.max_head_bytes.max(8192))
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        let table = Arc::clone(&table);
        connections.spawn(async move {
            tokio::select! {
                _ = conn => {}
                () = slot.kill.notified() => {}
            }
            table.lock().remove(&id);
        });
    }
    drop(listener);
    // No request in progress: nothing to finish, so nothing to wait for.
    let idle: Vec<Arc<Slot>> = table
        .lock()
        .values()
        .filter(|slot| slot.state().busy == 0)
        .cloned()
        .collect();
    for slot in &idle {
        slot.kill.notify_one();
    }
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        let left = table.lock().len();
        tracing::warn!(
            connections = left,
            grace_ms = limits.grace.as_millis() as u64,
            "requests still in progress after the shutdown grace; their connections are closed"
        );
    }
    connections.shutdown().await;
}

/// Closes the connections past a deadline.
fn sweep(table: &Table, limits: &ServeLimits, counters: &ServeCounters) {
    let now = Instant::now();
    for slot in table.lock().values() {
        match judge(*slot.state(), limits, now) {
            Verdict::Keep => continue,
            Verdict::HeaderTimeout => counters.header_timeouts.fetch_add(1, Ordering::Relaxed),
            Verdict::IdleTimeout => counters.idle_timeouts.fetch_add(1, Ordering::Relaxed),
        };
        slot.kill.notify_one();
    }
}

/// A whole HTTP/1.1 reply with a JSON body, for [`serve`]'s refusal.
pub fn raw_reply(status: u16, reason: &str, json: &str) -> Arc<[u8]> {
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{json}",
        json.len()
    )
    .into_bytes()
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServeLimits {
        ServeLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..ServeLimits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_sent_head_times_out_at_the_header_deadline_and_an_idle_one_later() {
        let t0 = Instant::now();
        let idle = SlotState {
            busy: 0,
            idle_since: t0,
            head_since: None,
        };
        let half = SlotState {
            head_since: Some(t0),
            ..idle
        };
        let busy = SlotState { busy: 1, ..half };
        let l = limits();
        assert_eq!(judge(half, &l, t0 + Duration::from_secs(9)), Verdict::Keep);
        assert_eq!(
            judge(half, &l, t0 + Duration::from_secs(10)),
            Verdict::HeaderTimeout
        );
        assert_eq!(judge(idle, &l, t0 + Duration::from_secs(59)), Verdict::Keep);
        assert_eq!(
            judge(idle, &l, t0 + Duration::from_secs(60)),
            Verdict::IdleTimeout
        );
        // A request in progress is never cut by these deadlines.
        assert_eq!(
            judge(busy, &l, t0 + Duration::from_secs(3600)),
            Verdict::Keep
        );
    }

    #[tokio::test(start_paused = true)]
    async fn eviction_takes_the_oldest_connection_without_a_request() {
        let table = Table::default();
        let t0 = Instant::now();
        for (id, secs) in [(0u64, 5u64), (1, 1), (2, 3)] {
            table
                .lock()
                .insert(id, Arc::new(Slot::new(t0 + Duration::from_secs(secs))));
        }
        // The oldest one is busy: the next oldest goes.
        let busy = table.lock()[&1].enter();
        assert!(table.evict_one());
        let two = Arc::clone(&table.lock()[&2]);
        let notified = two.kill.notified();
        tokio::pin!(notified);
        assert!(
            futures_ready(notified.as_mut()),
            "connection 2 (idle since 3 s) is the one told to close"
        );
        drop(busy);
        // All busy: nothing to evict.
        let table = Table::default();
        table.lock().insert(9, Arc::new(Slot::new(t0)));
        let _busy = table.lock()[&9].enter();
        assert!(!table.evict_one());
    }

    fn futures_ready<F: std::future::Future>(mut f: Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        f.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn the_refusal_is_a_whole_reply() {
        let reply = raw_reply(503, "Service Unavailable", r#"{"code":"503"}"#);
        let text = std::str::from_utf8(&reply).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("content-length: 14\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"code\":\"503\"}"));
    }
}
