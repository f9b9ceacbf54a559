//! Bitget's public WebSocket, `/v2/ws/public`, as the simulator serves it: candle channels on
//! both markets with Bitget's message shapes, every documented limit with the code Bitget
//! answers it with, and seeded faults.
//!
//! What it does, in Bitget's terms (`../shared/ws-store-status-anchors.md` §1):
//! - `{"op":"subscribe","args":[{instType,channel,instId}…]}` is acknowledged per argument with
//!   `{"event":"subscribe","arg":…}` and followed by a `snapshot` push: the last
//!   [`WsConfig::snapshot_rows`] bars, oldest first, the forming one last. Every second after
//!   that each channel gets an `update` with its forming bar. No row says a bar is closed.
//! - At a bar's close the next push either repeats the finished bar's final row before the new
//!   forming one ([`WsConfig::final_bar`], the behaviour a client may rely on) or carries only
//!   the new bar (the client must confirm the close another way). Bitget does not document
//!   which it does, so both are served.
//! - Limits: 100 sockets per IP and 300 connection attempts per IP in 5 minutes (the upgrade
//!   is refused with HTTP 429); 10 incoming messages per second per socket, pings included
//!   (the 11th gets 30007 and the socket is closed); 240 subscribe requests per hour per
//!   socket (30006, the socket stays open); at most 1000 channels per socket (30006);
//!   subscribe arguments of more than 4096 bytes (30016); no `ping` for 2 minutes closes the
//!   socket; a socket older than [`WsConfig::max_life`] is closed (Bitget: 24 h).
//! - Errors: an unknown instrument gets 30001, an unknown channel spelling 30016 and the
//!   socket stays open and silent for it, an unknown `op` 30003, unreadable JSON 30016.
//! - Faults, seeded: a socket dropped without a close frame, and silent stalls (no pushes and
//!   no pongs for a while, the socket left open).
//!
//! Time is the simulator's clock: bars, windows and a socket's age follow it, so a test that
//! moves a manual clock moves the socket's world with it (and can cut every socket at once).
//! Pushes and the ping timeout follow the runtime's timer, as the client's pings do.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bitget_proto::timeframe::{Market, Timeframe};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::market::Universe;
use super::state::SimState;

/// The socket's path.
pub const PATH: &str = "/v2/ws/public";
/// Sockets one IP may hold.
pub const SOCKETS_PER_IP: usize = 100;
/// Connection attempts one IP may make per [`ATTEMPT_WINDOW_MS`].
pub const ATTEMPTS_PER_IP: usize = 300;
pub const ATTEMPT_WINDOW_MS: u64 = 300_000;
/// Incoming messages per socket per second, pings included.
pub const MESSAGES_PER_S: usize = 10;
/// Subscribe requests per socket per hour.
pub const SUBSCRIBES_PER_HOUR: usize = 240;
/// Channels one socket may hold.
pub const CHANNELS_PER_SOCKET: usize = 1000;
/// Largest `args` of one subscribe, in bytes as sent.
pub const MAX_ARGS_BYTES: usize = 4096;
/// A socket that sent no `ping` for this long is closed (measured on the runtime's clock,
/// as the client's pings are paced: a test moving the simulator's clock by minutes does not
/// starve a socket that pings on time).
pub const PING_TIMEOUT: Duration = Duration::from_secs(120);

/// How the socket behaves; the limits above are Bitget's and fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct WsConfig {
    /// Close every socket this long after it opened (Bitget: 24 h); `None` never.
    pub max_life: Option<Duration>,
    /// The first push after a bar's close repeats the finished bar's final row.
    pub final_bar: bool,
    /// Rows of a snapshot, the forming bar included.
    pub snapshot_rows: usize,
    /// Time between two updates of a channel.
    pub push_interval: Duration,
    /// Probability, per socket and push interval, that the socket is dropped without a close.
    pub drop_per_push: f64,
    /// Probability, per socket and push interval, that it goes silent for [`Self::stall`].
    pub stall_per_push: f64,
    pub stall: Duration,
    /// Cut every open socket at once, this long after the simulator started (a release
    /// window, a network blip); `None` never.
    pub cut_all_after: Option<Duration>,
    pub seed: u64,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_life: Some(Duration::from_secs(24 * 3600)),
            final_bar: true,
            snapshot_rows: 100,
            push_interval: Duration::from_secs(1),
            drop_per_push: 0.0,
            stall_per_push: 0.0,
            stall: Duration::from_secs(5),
            cut_all_after: None,
            seed: 1,
        }
    }
}

/// What the socket side saw, for tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WsStats {
    /// Sockets opened, in all.
    pub connections: u64,
    /// Upgrades refused: the IP held [`SOCKETS_PER_IP`] sockets.
    pub refused_sockets: u64,
    /// Upgrades refused: the IP made [`ATTEMPTS_PER_IP`] attempts in 5 minutes.
    pub refused_attempts: u64,
    /// Sockets open now, and the most open at once.
    pub open: u64,
    pub max_open: u64,
    /// Incoming messages, pings among them.
    pub messages_in: u64,
    pub pings: u64,
    /// The most messages one socket sent within one second.
    pub max_messages_in_1s: u64,
    pub subscribe_requests: u64,
    /// Channels subscribed, in all (a channel subscribed again counts again).
    pub subscribed: u64,
    pub pushes: u64,
    pub rows_pushed: u64,
    /// Error events sent, by code.
    pub errors: BTreeMap<String, u64>,
    /// Sockets closed for having lived [`WsConfig::max_life`].
    pub expired: u64,
    /// Sockets closed for sending no ping for 2 minutes.
    pub ping_timeouts: u64,
    /// Faults: sockets dropped, stalls begun.
    pub dropped: u64,
    pub stalls: u64,
}

#[derive(Debug, Default)]
struct IpState {
    open: usize,
    attempts: VecDeque<u64>,
}

/// The socket side's shared state.
#[derive(Debug)]
pub struct WsHub {
    config: WsConfig,
    ips: Mutex<HashMap<IpAddr, IpState>>,
    stats: Mutex<WsStats>,
    rng: Mutex<ChaCha8Rng>,
    closing: watch::Sender<bool>,
    /// Bumped to cut every open socket at once.
    cut: watch::Sender<u64>,
    /// While set, upgrades are refused (an outage, a release window).
    refusing: std::sync::atomic::AtomicBool,
    /// Codes the next subscribe requests are answered with, whatever their budgets say:
    /// Bitget's limits are its own to count, and a client must survive them anyway.
    injected: Mutex<std::collections::VecDeque<u32>>,
}

impl WsHub {
    pub fn new(config: WsConfig) -> Self {
        Self {
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
            config,
            ips: Mutex::default(),
            stats: Mutex::default(),
            closing: watch::Sender::new(false),
            cut: watch::Sender::new(0),
            refusing: std::sync::atomic::AtomicBool::new(false),
            injected: Mutex::default(),
        }
    }

    /// Answers the next `count` subscribe requests (on any socket) with `code` instead:
    /// 30006 refuses the request and keeps the socket, 30007 closes it.
    pub fn refuse_subscribes(&self, code: u32, count: usize) {
        lock(&self.injected).extend(std::iter::repeat_n(code, count));
    }

    /// Drops every open socket now, without a close frame (a mass disconnect).
    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Refuses (`true`) or accepts again (`false`) every new socket, with HTTP 503.
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing
            .store(refusing, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn config(&self) -> &WsConfig {
        &self.config
    }

    /// The counters so far.
    pub fn stats(&self) -> WsStats {
        lock(&self.stats).clone()
    }

    /// Closes every socket (the simulator is stopping).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    fn count(&self, f: impl FnOnce(&mut WsStats)) {
        f(&mut lock(&self.stats));
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).gen_bool(p.min(1.0))
    }

    /// Takes a socket slot for `ip` at `now`, or says why not.
    fn admit(&self, ip: IpAddr, now: u64) -> Result<(), &'static str> {
        let mut ips = lock(&self.ips);
        let state = ips.entry(ip).or_default();
        while state
            .attempts
            .front()
            .is_some_and(|&t| t + ATTEMPT_WINDOW_MS <= now)
        {
            state.attempts.pop_front();
        }
        if state.attempts.len() >= ATTEMPTS_PER_IP {
            self.count(|s| s.refused_attempts += 1);
            return Err("too many connection attempts from this address");
        }
        state.attempts.push_back(now);
        if state.open >= SOCKETS_PER_IP {
            self.count(|s| s.refused_sockets += 1);
            return Err("too many connections from this address");
        }
        state.open += 1;
        self.count(|s| {
            s.connections += 1;
            s.open += 1;
            s.max_open = s.max_open.max(s.open);
        });
        Ok(())
    }

    fn release(&self, ip: IpAddr) {
        if let Some(state) = lock(&self.ips).get_mut(&ip) {
            state.open = state.open.saturating_sub(1);
        }
        self.count(|s| s.open = s.open.saturating_sub(1));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers an upgrade to `/v2/ws/public` from `ip`.
pub fn upgrade(sim: Arc<SimState>, ip: IpAddr, upgrade: WebSocketUpgrade) -> Response {
    let now = sim.clock.now_ms();
    if sim.ws.refusing.load(std::sync::atomic::Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "websocket unavailable").into_response();
    }
    if let Err(why) = sim.ws.admit(ip, now) {
        return (StatusCode::TOO_MANY_REQUESTS, why).into_response();
    }
    upgrade
        .on_upgrade(move |socket| async move {
            Socket::new(Arc::clone(&sim), now).run(socket).await;
            sim.ws.release(ip);
        })
        .into_response()
}

/// One subscribed candle channel.
#[derive(Debug)]
struct Channel {
    market: Market,
    timeframe: Timeframe,
    symbol: String,
    /// The open time of the bar the last push ended with.
    last_open: u64,
}

#[derive(Debug)]
struct Socket {
    sim: Arc<SimState>,
    opened: u64,
    last_ping: tokio::time::Instant,
    /// Arrival times of the last second's and the last hour's requests.
    messages: VecDeque<u64>,
    subscribes: VecDeque<u64>,
    channels: BTreeMap<(Market, String, String), Channel>,
    stalled_until: u64,
}

enum Verdict {
    Continue,
    Close,
    /// Hang up without a close frame, as a cut line does.
    Drop,
}

impl Socket {
    fn new(sim: Arc<SimState>, now: u64) -> Self {
        Self {
            sim,
            opened: now,
            last_ping: tokio::time::Instant::now(),
            messages: VecDeque::new(),
            subscribes: VecDeque::new(),
            channels: BTreeMap::new(),
            stalled_until: 0,
        }
    }

    fn hub(&self) -> &WsHub {
        &self.sim.ws
    }

    async fn run(mut self, mut socket: WebSocket) {
        let mut closing = self.hub().closing.subscribe();
        if *closing.borrow_and_update() {
            return;
        }
        let mut cut = self.hub().cut.subscribe();
        cut.borrow_and_update();
        let mut tick = tokio::time::interval(self.hub().config.push_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let verdict = tokio::select! {
                _ = closing.changed() => Verdict::Close,
                _ = cut.changed() => {
                    self.hub().count(|s| s.dropped += 1);
                    Verdict::Drop
                }
                message = socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => self.on_text(&mut socket, text.as_str()).await,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => Verdict::Close,
                    Some(Ok(_)) => Verdict::Continue,
                },
                _ = tick.tick() => self.on_tick(&mut socket).await,
            };
            match verdict {
                Verdict::Continue => {}
                Verdict::Close => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Verdict::Drop => return,
            }
        }
    }

    fn now(&self) -> u64 {
        self.sim.clock.now_ms()
    }

    async fn send(&mut self, socket: &mut WebSocket, value: Value) -> bool {
        socket
            .send(Message::Text(value.to_string().into()))
            .await
            .is_ok()
    }

    async fn error(&mut self, socket: &mut WebSocket, code: u32, msg: &str) -> bool {
        self.hub()
            .count(|s| *s.errors.entry(code.to_string()).or_default() += 1);
        self.send(socket, json!({"event": "error", "code": code, "msg": msg}))
            .await
    }

    async fn on_text(&mut self, socket: &mut WebSocket, text: &str) -> Verdict {
        let now = self.now();
        while self.messages.front().is_some_and(|&t| t + 1000 <= now) {
            self.messages.pop_front();
        }
        self.messages.push_back(now);
        let in_1s = self.messages.len() as u64;
        self.hub().count(|s| {
            s.messages_in += 1;
            s.max_messages_in_1s = s.max_messages_in_1s.max(in_1s);
        });
        if self.messages.len() > MESSAGES_PER_S {
            self.error(socket, 30007, "request over limit, connection close")
                .await;
            return Verdict::Close;
        }
        if text == "ping" {
            self.last_ping = tokio::time::Instant::now();
            self.hub().count(|s| s.pings += 1);
            if now >= self.stalled_until {
                let _ = socket.send(Message::Text("pong".into())).await;
            }
            return Verdict::Continue;
        }
        let Ok(request) = serde_json::from_str::<Value>(text) else {
            self.error(socket, 30016, "Param error").await;
            return Verdict::Continue;
        };
        let op = request.get("op").and_then(Value::as_str).unwrap_or("");
        let args = request.get("args").cloned().unwrap_or(Value::Null);
        match op {
            "subscribe" => {
                let injected = lock(&self.hub().injected).pop_front();
                match injected {
                    Some(code @ 30007) => {
                        self.error(socket, code, "request over limit, connection close")
                            .await;
                        return Verdict::Close;
                    }
                    Some(code) => {
                        self.error(socket, code, "request too many").await;
                    }
                    None => self.subscribe(socket, &args, now).await,
                }
            }
            "unsubscribe" => self.unsubscribe(socket, &args).await,
            _ => {
                self.error(socket, 30003, "invalid op").await;
            }
        }
        Verdict::Continue
    }

    async fn subscribe(&mut self, socket: &mut WebSocket, args: &Value, now: u64) {
        while self
            .subscribes
            .front()
            .is_some_and(|&t| t + 3_600_000 <= now)
        {
            self.subscribes.pop_front();
        }
        self.hub().count(|s| s.subscribe_requests += 1);
        if self.subscribes.len() >= SUBSCRIBES_PER_HOUR {
            self.error(socket, 30006, "request too many").await;
            return;
        }
        self.subscribes.push_back(now);
        let Some(list) = args.as_array() else {
            self.error(socket, 30016, "Param error").await;
            return;
        };
        if args.to_string().len() > MAX_ARGS_BYTES {
            self.error(socket, 30016, "Param error").await;
            return;
        }
        for arg in list {
            match parse_arg(&self.sim.universe, arg) {
                Err((code, msg)) => {
                    self.error(socket, code, &msg).await;
                }
                Ok((market, timeframe, symbol)) => {
                    let key = (market, timeframe.channel().to_owned(), symbol.clone());
                    if !self.channels.contains_key(&key)
                        && self.channels.len() >= CHANNELS_PER_SOCKET
                    {
                        self.error(socket, 30006, "channels over limit").await;
                        continue;
                    }
                    self.hub().count(|s| s.subscribed += 1);
                    self.send(socket, json!({"event": "subscribe", "arg": arg}))
                        .await;
                    let open = timeframe.open_of(now);
                    let channel = Channel {
                        market,
                        timeframe,
                        symbol,
                        last_open: open,
                    };
                    let rows = self.snapshot_rows(&channel, now);
                    self.push(socket, &channel, "snapshot", rows, now).await;
                    self.channels.insert(key, channel);
                }
            }
        }
    }

    async fn unsubscribe(&mut self, socket: &mut WebSocket, args: &Value) {
        for arg in args.as_array().into_iter().flatten() {
            if let Ok((market, timeframe, symbol)) = parse_arg(&self.sim.universe, arg) {
                self.channels
                    .remove(&(market, timeframe.channel().to_owned(), symbol));
                self.send(socket, json!({"event": "unsubscribe", "arg": arg}))
                    .await;
            }
        }
    }

    async fn on_tick(&mut self, socket: &mut WebSocket) -> Verdict {
        let now = self.now();
        let config = self.hub().config.clone();
        if config
            .max_life
            .is_some_and(|life| now.saturating_sub(self.opened) >= life.as_millis() as u64)
        {
            self.hub().count(|s| s.expired += 1);
            return Verdict::Close;
        }
        if self.last_ping.elapsed() >= PING_TIMEOUT {
            self.hub().count(|s| s.ping_timeouts += 1);
            return Verdict::Close;
        }
        if self.hub().chance(config.drop_per_push) {
            self.hub().count(|s| s.dropped += 1);
            return Verdict::Drop;
        }
        if now < self.stalled_until {
            return Verdict::Continue;
        }
        if self.hub().chance(config.stall_per_push) {
            self.hub().count(|s| s.stalls += 1);
            self.stalled_until = now + config.stall.as_millis() as u64;
            return Verdict::Continue;
        }
        let keys: Vec<_> = self.channels.keys().cloned().collect();
        for key in keys {
            let Some(channel) = self.channels.get(&key) else {
                continue;
            };
            let open = channel.timeframe.open_of(now);
            let mut rows = Vec::with_capacity(2);
            if open > channel.last_open && config.final_bar {
                let finished = channel.last_open;
                rows.push(self.row(channel, finished, channel.timeframe.next_open(finished)));
            }
            rows.push(self.row(channel, open, now));
            let sent = {
                let channel = &self.channels[&key];
                let message = push_message(channel, "update", &rows, now);
                self.send(socket, message).await
            };
            self.hub().count(|s| {
                s.pushes += 1;
                s.rows_pushed += rows.len() as u64;
            });
            if !sent {
                return Verdict::Close;
            }
            if let Some(channel) = self.channels.get_mut(&key) {
                channel.last_open = open;
            }
        }
        Verdict::Continue
    }

    fn snapshot_rows(&self, channel: &Channel, now: u64) -> Vec<Value> {
        let g = channel.timeframe;
        let mut opens = vec![g.open_of(now)];
        while opens.len() < self.hub().config.snapshot_rows.max(1) {
            let prev = g.prev_open(*opens.last().unwrap_or(&0));
            opens.push(prev);
        }
        opens.reverse();
        opens
            .into_iter()
            .map(|open| self.row(channel, open, now))
            .collect()
    }

    /// The bar of `channel` opening at `open`, as it stands at `now`.
    fn row(&self, channel: &Channel, open: u64, now: u64) -> Value {
        let contract = self
            .sim
            .universe
            .get(&channel.symbol)
            .expect("subscribed symbols are listed");
        let k = contract.candle(channel.timeframe.granularity(), open, now);
        json!([
            k.open_time.to_string(),
            k.open.to_string(),
            k.high.to_string(),
            k.low.to_string(),
            k.close.to_string(),
            k.base_volume.to_string(),
            k.quote_volume.to_string(),
            k.quote_volume.to_string()
        ])
    }

    async fn push(
        &mut self,
        socket: &mut WebSocket,
        channel: &Channel,
        action: &str,
        rows: Vec<Value>,
        now: u64,
    ) {
        let count = rows.len() as u64;
        let message = push_message(channel, action, &rows, now);
        self.send(socket, message).await;
        self.hub().count(|s| {
            s.pushes += 1;
            s.rows_pushed += count;
        });
    }
}

fn inst_type(market: Market) -> &'static str {
    match market {
        Market::Futures => "USDT-FUTURES",
        Market::Spot => "SPOT",
    }
}

fn push_message(channel: &Channel, action: &str, rows: &[Value], now: u64) -> Value {
    json!({
        "action": action,
        "arg": {
            "instType": inst_type(channel.market),
            "channel": channel.timeframe.channel(),
            "instId": channel.symbol,
        },
        "data": rows,
        "ts": now,
    })
}

/// A subscribe argument's market, timeframe and symbol, or the error event's code and text.
fn parse_arg(
    universe: &Universe,
    arg: &Value,
) -> Result<(Market, Timeframe, String), (u32, String)> {
    let field = |name: &str| arg.get(name).and_then(Value::as_str).unwrap_or("");
    let (inst_type, channel, inst_id) = (field("instType"), field("channel"), field("instId"));
    let missing = || {
        (
            30001,
            format!("instType:{inst_type},channel:{channel},instId:{inst_id} doesn't exist"),
        )
    };
    let market = match inst_type {
        "USDT-FUTURES" => Market::Futures,
        "SPOT" => Market::Spot,
        _ => return Err(missing()),
    };
    let Some(timeframe) = Timeframe::from_channel(market, channel) else {
        return Err((30016, "Param error".to_owned()));
    };
    if universe.get(inst_id).is_none_or(|c| c.status != "normal") {
        return Err(missing());
    }
    Ok((market, timeframe, inst_id.to_owned()))
}
