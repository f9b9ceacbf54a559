//! The simulator's HTTP side: one pipeline every Bitget request goes through, and the accept
//! loop that can drop a connection mid-request.
//!
//! Pipeline: route lookup → parameters → signature (signed endpoints) → rate limit → fault →
//! handler → envelope, then the request is counted and logged. The accept loop is our own
//! (hyper-util under the axum router) instead of `axum::serve` because the "connection reset"
//! fault must close the socket with a TCP reset while a request is in flight, which needs the
//! socket in hand.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::auth::{self, SignedRequest};
use super::codes::ApiError;
use super::endpoints::{self, Route, Scope, ENDPOINTS};
use super::faults::{self, Fault};
use super::handlers;
use super::limits::{Decision, ScopeKey};
use super::market::second_start;
use super::params::Params;
use super::record::{Outcome, RequestRecord};
use super::state::SimState;
use super::ws;

/// The header Bitget uses to report calls left in the current second on an endpoint.
pub const REMAIN_HEADER: &str = "x-mbx-used-remain-limit";
/// Largest request body the simulator reads.
const MAX_BODY_BYTES: usize = 1 << 20;
/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Replies cached per query string, dropped all at once beyond this many.
const MAX_CACHED_REPLIES: usize = 50_000;

/// Per-connection facts the handler needs: who is calling and how to hang up on them.
#[derive(Debug, Clone)]
struct Connection {
    peer: SocketAddr,
    kill: Arc<Notify>,
}

/// The axum router: admin endpoints under `/sim/`, everything else through the pipeline.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/sim/stats", get(stats))
        .route("/sim/health", get(|| async { "ok" }))
        .route(ws::PATH, get(websocket))
        .fallback(bitget)
        .with_state(state)
}

async fn stats(State(sim): State<Arc<SimState>>) -> impl IntoResponse {
    Json(sim.snapshot())
}

async fn websocket(
    State(sim): State<Arc<SimState>>,
    Extension(connection): Extension<Connection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    ws::upgrade(sim, connection.peer.ip(), upgrade)
}

/// Accepts connections on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish for up to five seconds.
pub async fn serve(
    listener: TcpListener,
    state: Arc<SimState>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let app = router(Arc::clone(&state));
    // Every connection watches this and, once it flips, finishes its request and closes.
    // (hyper-util's GracefulShutdown cannot watch a connection that may be upgraded to a
    // WebSocket, so this is the same thing by hand.)
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually out of file descriptors; give in-flight connections a moment to
                    // close rather than spinning on the same error.
                    tracing::warn!(%error, "simulator failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        // A duplicate handle to the socket lets the reset fault set SO_LINGER 0 and close it
        // while hyper still owns the original.
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        let Ok(reset_handle) = std_stream.try_clone() else {
            continue;
        };
        let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
            continue;
        };
        let connection = Connection {
            peer,
            kill: Arc::new(Notify::new()),
        };
        let kill = connection.kill.clone();
        let service = app.clone().layer(Extension(connection));
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(
                    service.map_request(|r: Request<hyper::body::Incoming>| r.map(Body::new)),
                ),
            )
            .with_upgrades();
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = kill.notified() => {
                    let _ = socket2::SockRef::from(&reset_handle).set_linger(Some(Duration::ZERO));
                }
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(reset_handle);
        });
    }
    drop(listener);
    state.ws.close_all();
    closing.send_replace(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::warn!("simulator connections still open after the grace period; closing them");
    }
    connections.shutdown().await;
}

/// Every Bitget path lands here.
async fn bitget(
    State(sim): State<Arc<SimState>>,
    Extension(conn): Extension<Connection>,
    request: Request,
) -> Response {
    let now = arrive(&sim).await;
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let client = conn.peer.ip();
    let mut record = Record {
        sim: &sim,
        now,
        method: parts.method.as_str(),
        path: &path,
        client,
        symbol: None,
        limit: None,
        granularity: None,
        admitted_as: Cell::new(None),
        finished: Cell::new(false),
    };

    let Some(idx) =
        endpoints::find(&path).filter(|&i| ENDPOINTS[i].method == parts.method.as_str())
    else {
        return record.error(ApiError::bad_request("40404", ""), None, None);
    };
    let endpoint = &ENDPOINTS[idx];
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => return record.error(ApiError::bad_request("400172", ""), None, None),
    };
    let scope_key = match endpoint.scope {
        Scope::Ip => ScopeKey::Ip(client),
        Scope::ApiKey => {
            let signed = SignedRequest {
                method: parts.method.as_str(),
                path: &path,
                query: &query,
                body: &body,
            };
            match auth::authenticate(&sim.keys, &parts.headers, signed, now) {
                Ok(creds) => ScopeKey::ApiKey(creds.api_key.clone()),
                Err(error) => return record.error(error, None, None),
            }
        }
    };
    // Parameters are read after the signature check, so unsigned junk never gets that far.
    let params = if parts.method == Method::POST {
        match Params::from_json_body(&body) {
            Ok(params) => params,
            Err(error) => return record.error(error, None, None),
        }
    } else {
        Params::from_query(&query)
    };
    record.symbol = params.get("symbol").map(str::to_owned);
    record.limit = params.get("limit").and_then(|l| l.parse().ok());
    record.granularity = params.get("granularity").map(str::to_owned);
    let decision = sim
        .limiter
        .check(idx, endpoint, client, scope_key.clone(), now);
    // The order fault refuses an order the window accepted, as another program on the same
    // account would have made it.
    let forced = matches!(decision, Decision::Accepted { .. })
        && endpoint.route == Route::PlaceOrder
        && sim.faults.rate_limit_order();
    let admitted = match decision {
        Decision::Accepted {
            remaining,
            in_window,
        } if !forced => Admitted {
            remaining,
            in_window,
        },
        _ => {
            let error = ApiError::rate_limited(sim.rate_limit_status, sim.rate_limit_code);
            return record.finish(
                error_response(&error, now, Some(0)),
                error.code,
                Outcome::RateLimited,
                None,
            );
        }
    };

    let fault = sim.faults.draw(record.symbol.is_some());
    let outcome = match fault {
        Some(f) => Outcome::Fault {
            name: f.name(),
            in_window: admitted.in_window,
        },
        None => Outcome::Ok {
            in_window: admitted.in_window,
        },
    };
    record.admitted_as.set(Some((outcome, fault)));
    match fault {
        Some(Fault::Symbol) => {
            let error = ApiError::unknown(record.symbol.as_deref().unwrap_or("symbol"));
            return record.error(error, Some(admitted), fault);
        }
        Some(Fault::Busy { code }) => {
            return record.error(ApiError::bad_request(code, ""), Some(admitted), fault);
        }
        Some(Fault::Html { status }) => {
            let response = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                [(header::CONTENT_TYPE, "text/html")],
                faults::html_error_page(status),
            )
                .into_response();
            return record.finish(response, "", outcome, fault);
        }
        Some(Fault::Reset) => {
            record.finish(StatusCode::OK.into_response(), "", outcome, fault);
            conn.kill.notify_one();
            return std::future::pending().await;
        }
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Truncated | Fault::LostReply) | None => {}
    }

    let data = match endpoint.scope {
        Scope::Ip => cached_public(&sim, endpoint.route, &query, &params, now),
        Scope::ApiKey => {
            let ScopeKey::ApiKey(api_key) = &scope_key else {
                unreachable!("signed endpoints are keyed by api key")
            };
            sim.accounts
                .handle(endpoint.route, &params, api_key, &sim.universe, now)
                .map(Arc::from)
        }
    };
    let data = match data {
        Ok(data) => data,
        Err(error) => return record.error(error, Some(admitted), fault),
    };
    if endpoint.route == Route::PlaceOrder && sim.faults.lose_order_reply() {
        let lost = Some(Fault::LostReply);
        let outcome = Outcome::Fault {
            name: Fault::LostReply.name(),
            in_window: admitted.in_window,
        };
        record.finish(StatusCode::OK.into_response(), "", outcome, lost);
        conn.kill.notify_one();
        return std::future::pending().await;
    }
    let mut body =
        format!(r#"{{"code":"00000","msg":"success","requestTime":{now},"data":{data}}}"#);
    if fault == Some(Fault::Truncated) {
        let mut cut = body.len() / 2;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    let response = json_response(StatusCode::OK, body, Some(admitted.remaining));
    record.finish(response, "00000", outcome, fault)
}

/// Waits out the request's trip to the server and any server pause it runs into, and
/// returns the server time it is metered and stamped at.
async fn arrive(sim: &SimState) -> u64 {
    if sim.network.is_ideal() {
        return sim.clock.now_ms();
    }
    let delay = sim.network.arrival_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let now = sim.clock.now_ms();
    match sim.network.stall_end(now) {
        Some(end) => {
            tokio::time::sleep(Duration::from_millis(end - now)).await;
            sim.clock.now_ms().max(end)
        }
        None => now,
    }
}

/// The public reply's `data`, from the per-second cache when the same query was answered
/// this second. Prices move once a second, so a cached reply is exactly what a fresh one
/// would be.
fn cached_public(
    sim: &SimState,
    route: Route,
    query: &str,
    params: &Params,
    now: u64,
) -> Result<Arc<str>, ApiError> {
    if route == Route::Time {
        return handlers::public(route, params, &sim.universe, now).map(Arc::from);
    }
    let second = now / 1_000;
    let key = (route, query.to_owned());
    if let Some((at, data)) = sim
        .cache
        .entries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        if *at == second {
            return Ok(data.clone());
        }
    }
    let data: Arc<str> = handlers::public(route, params, &sim.universe, second_start(now))?.into();
    let mut entries = sim.cache.entries.lock().unwrap_or_else(|e| e.into_inner());
    if entries.len() >= MAX_CACHED_REPLIES {
        entries.clear();
    }
    entries.insert(key, (second, data.clone()));
    Ok(data)
}

/// The limiter's admission of a request: calls left this second, requests in the window.
#[derive(Debug, Clone, Copy)]
struct Admitted {
    remaining: u32,
    in_window: u32,
}

/// What is known about a request while it is handled, for the log line and counters.
struct Record<'a> {
    sim: &'a SimState,
    now: u64,
    method: &'a str,
    path: &'a str,
    client: std::net::IpAddr,
    /// Owned, because the record outlives the parsed parameters it came from.
    symbol: Option<String>,
    /// Rows asked for, and of which timeframe (candle reads).
    limit: Option<u32>,
    granularity: Option<String>,
    /// Set once the limiter admits the request: what to count if the handler is dropped
    /// before it replies (the client hung up during a slow reply).
    admitted_as: Cell<Option<(Outcome, Option<Fault>)>>,
    finished: Cell<bool>,
}

/// Status logged for a request whose client went away before the reply (as nginx does).
const CLIENT_CLOSED_REQUEST: u16 = 499;

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if let (false, Some((outcome, fault))) = (self.finished.get(), self.admitted_as.get()) {
            self.log(CLIENT_CLOSED_REQUEST, "", outcome, fault);
        }
    }
}

impl Record<'_> {
    /// Replies with a Bitget error; `admitted` is set when the limiter let the request in.
    fn error(&self, error: ApiError, admitted: Option<Admitted>, fault: Option<Fault>) -> Response {
        let outcome = match (fault, admitted) {
            (Some(f), Some(a)) => Outcome::Fault {
                name: f.name(),
                in_window: a.in_window,
            },
            _ => Outcome::Error {
                in_window: admitted.map(|a| a.in_window),
            },
        };
        self.finish(
            error_response(&error, self.now, admitted.map(|a| a.remaining)),
            error.code,
            outcome,
            fault,
        )
    }

    fn finish(
        &self,
        response: Response,
        code: &str,
        outcome: Outcome,
        fault: Option<Fault>,
    ) -> Response {
        self.finished.set(true);
        self.log(response.status().as_u16(), code, outcome, fault);
        response
    }

    fn log(&self, status: u16, code: &str, outcome: Outcome, fault: Option<Fault>) {
        self.sim.recorder.record(
            &RequestRecord {
                ts: self.now,
                method: self.method,
                path: self.path,
                symbol: self.symbol.as_deref(),
                limit: self.limit,
                granularity: self.granularity.as_deref(),
                client: self.client,
                status,
                code,
                fault: fault.map(Fault::name),
            },
            outcome,
        );
    }
}

fn error_response(error: &ApiError, now: u64, remaining: Option<u32>) -> Response {
    let body = serde_json::json!({ "code": error.code, "msg": error.msg, "requestTime": now, "data": null });
    json_response(error.status, body.to_string(), remaining)
}

fn json_response(status: StatusCode, body: String, remaining: Option<u32>) -> Response {
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(remaining) = remaining {
        response
            .headers_mut()
            .insert(REMAIN_HEADER, HeaderValue::from(remaining));
    }
    response
}
