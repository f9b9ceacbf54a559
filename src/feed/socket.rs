//! One socket's life: connect within the address's budgets, subscribe its channels within the
//! socket's, keep it alive with Bitget's text `ping`, notice when it died (closed, no `pong`,
//! or silent although subscribed), and connect again after a delay with jitter, so a mass
//! cut (the daily disconnect, a release window) is answered by staggered reconnects rather
//! than a storm. Every message sent, pings included, takes its place in the limiter first.
//!
//! The task owns its socket and the list of channels it carries; the feed tells it what to
//! add or drop ([`Command`]) and hears what happened ([`Event`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::FeedConfig;
use crate::bitget::ws::client::{self, Socket, WsError};
use crate::bitget::ws::messages::{self, Channel};
use crate::bitget::ws::parse::{Incoming, Push};
use crate::bitget::ws::LIMITS;
use crate::limiter::sockets::{SocketBudget, SocketWindow};
use crate::limiter::RateLimiter;

/// How long a subscribe may go unacknowledged before its channels count as refused.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// A socket that lived this long starts its next reconnect from the shortest delay again.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What the feed tells a socket.
#[derive(Debug)]
pub enum Command {
    Subscribe(Vec<Channel>),
    /// Stop carrying these; unsubscribe them if the socket is up.
    Drop(Vec<Channel>),
}

/// What a socket tells the feed.
#[derive(Debug)]
pub enum Event {
    Up {
        slot: usize,
    },
    Push {
        slot: usize,
        push: Push,
    },
    /// An error event.
    Error {
        slot: usize,
        code: u32,
        msg: String,
    },
    /// Channels Bitget refused (named by the error, or unacknowledged in time), or whose
    /// subscribe request it throttled (`throttled`: a 30006 says nothing against the
    /// channels); the socket no longer carries them.
    Refused {
        slot: usize,
        channels: Vec<Channel>,
        throttled: bool,
    },
    Down {
        slot: usize,
        reason: String,
        rate_limited: bool,
    },
}

/// Everything a socket task needs besides its channels.
#[derive(Debug, Clone)]
pub struct SocketParts {
    pub url: String,
    /// The address it leaves from (the egress), for the per-address budgets.
    pub egress: u64,
    pub config: FeedConfig,
    pub limiter: Arc<dyn RateLimiter>,
    pub events: mpsc::Sender<Event>,
    /// Socket ids, unique in the process: each connection is a new socket to Bitget.
    pub ids: Arc<AtomicU64>,
    pub stop: CancellationToken,
}

/// The pending channel an error text such as `instType:USDT-FUTURES,channel:candle1m,
/// instId:NOPEUSDT doesn't exist` names, if it names one.
fn named_channel(msg: &str, pending: &[(Channel, Instant)]) -> Option<Channel> {
    let field = |name: &str| {
        let start = msg.find(name)? + name.len();
        let rest = &msg[start..];
        let end = rest.find([',', ' ']).unwrap_or(rest.len());
        Some(&rest[..end])
    };
    let (channel, inst_id) = (field("channel:")?, field("instId:")?);
    pending
        .iter()
        .map(|(c, _)| c)
        .find(|c| c.symbol.as_str() == inst_id && c.timeframe.channel() == channel)
        .cloned()
}

fn messages_window(id: u64) -> SocketWindow {
    SocketWindow {
        budget: SocketBudget::Messages,
        key: id,
        limit: LIMITS.messages_per_s,
        window_ms: 1_000,
    }
}

fn subscribes_window(id: u64) -> SocketWindow {
    SocketWindow {
        budget: SocketBudget::Subscribes,
        key: id,
        limit: LIMITS.subscribes_per_hour,
        window_ms: 3_600_000,
    }
}

/// Why a connection ended.
enum End {
    Stopped,
    Down { reason: String, rate_limited: bool },
}

/// Runs socket `slot` carrying `channels` until `parts.stop`.
pub async fn run(
    slot: usize,
    mut channels: Vec<Channel>,
    mut commands: mpsc::Receiver<Command>,
    parts: SocketParts,
) {
    let mut failures: u32 = 0;
    // The first connection waits a random part of the shortest delay too, so sockets
    // started together (or cut together) do not all dial at once.
    let mut delay = jitter(parts.config.reconnect_min);
    loop {
        tokio::select! {
            () = parts.stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        let started = Instant::now();
        match connection(slot, &mut channels, &mut commands, &parts).await {
            End::Stopped => return,
            End::Down {
                reason,
                rate_limited,
            } => {
                let _ = parts
                    .events
                    .send(Event::Down {
                        slot,
                        reason,
                        rate_limited,
                    })
                    .await;
            }
        }
        if started.elapsed() >= STABLE_AFTER {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        let base = parts
            .config
            .reconnect_min
            .saturating_mul(1u32 << failures.min(16).saturating_sub(1))
            .min(parts.config.reconnect_max);
        delay = base / 2 + jitter(base / 2 + Duration::from_millis(1));
    }
}

fn jitter(up_to: Duration) -> Duration {
    let ms = up_to.as_millis().max(1) as u64;
    Duration::from_millis(rand::thread_rng().gen_range(0..ms))
}

async fn connection(
    slot: usize,
    channels: &mut Vec<Channel>,
    commands: &mut mpsc::Receiver<Command>,
    parts: &SocketParts,
) -> End {
    let limiter = &parts.limiter;
    let id = parts.ids.fetch_add(1, Ordering::Relaxed);
    let address = [
        SocketWindow {
            budget: SocketBudget::Attempts,
            key: parts.egress,
            limit: LIMITS.attempts_per_ip,
            window_ms: LIMITS.attempt_window.as_millis() as u64,
        },
        SocketWindow {
            budget: SocketBudget::Sockets,
            key: parts.egress,
            limit: LIMITS.sockets_per_ip,
            window_ms: 0,
        },
    ];
    tokio::select! {
        () = parts.stop.cancelled() => return End::Stopped,
        () = limiter.socket_acquire(&address) => {}
    }
    let connected = tokio::select! {
        () = parts.stop.cancelled() => {
            limiter.socket_closed(id, parts.egress);
            return End::Stopped;
        }
        c = client::connect(&parts.url, parts.config.silent_after) => c,
    };
    let mut socket = match connected {
        Ok(socket) => socket,
        Err(e) => {
            limiter.socket_closed(id, parts.egress);
            return End::Down {
                rate_limited: e.is_rate_limited(),
                reason: e.to_string(),
            };
        }
    };
    let _ = parts.events.send(Event::Up { slot }).await;
    let end = carry(slot, id, &mut socket, channels, commands, parts).await;
    socket.close().await;
    limiter.socket_closed(id, parts.egress);
    end
}

/// Sends `requests` through the socket's budgets.
async fn send_requests(
    socket: &mut Socket,
    id: u64,
    requests: Vec<String>,
    subscribe: bool,
    parts: &SocketParts,
) -> Result<(), WsError> {
    for request in requests {
        let windows = if subscribe {
            vec![messages_window(id), subscribes_window(id)]
        } else {
            vec![messages_window(id)]
        };
        parts.limiter.socket_acquire(&windows).await;
        socket.send(&request).await?;
    }
    Ok(())
}

async fn carry(
    slot: usize,
    id: u64,
    socket: &mut Socket,
    channels: &mut Vec<Channel>,
    commands: &mut mpsc::Receiver<Command>,
    parts: &SocketParts,
) -> End {
    let config = &parts.config;
    let down = |reason: String| End::Down {
        reason,
        rate_limited: false,
    };
    // Channels subscribed and not acknowledged yet, with the deadline of their request.
    let mut unacked: Vec<(Channel, Instant)> = Vec::new();
    if !channels.is_empty() {
        let deadline = Instant::now() + ACK_TIMEOUT;
        unacked.extend(channels.iter().cloned().map(|c| (c, deadline)));
        if let Err(e) = send_requests(socket, id, messages::subscribe(channels), true, parts).await
        {
            return down(e.to_string());
        }
    }
    let mut ping =
        tokio::time::interval_at(Instant::now() + LIMITS.ping_interval, LIMITS.ping_interval);
    let mut check = tokio::time::interval(Duration::from_millis(250));
    let mut pong_due: Option<Instant> = None;
    let mut last_push = Instant::now();
    loop {
        tokio::select! {
            () = parts.stop.cancelled() => return End::Stopped,
            command = commands.recv() => match command {
                None => return End::Stopped,
                Some(Command::Subscribe(more)) => {
                    let deadline = Instant::now() + ACK_TIMEOUT;
                    unacked.extend(more.iter().cloned().map(|c| (c, deadline)));
                    channels.extend(more.iter().cloned());
                    if let Err(e) = send_requests(socket, id, messages::subscribe(&more), true, parts).await {
                        return down(e.to_string());
                    }
                }
                Some(Command::Drop(gone)) => {
                    channels.retain(|c| !gone.contains(c));
                    unacked.retain(|(c, _)| !gone.contains(c));
                    if let Err(e) = send_requests(socket, id, messages::unsubscribe(&gone), false, parts).await {
                        return down(e.to_string());
                    }
                }
            },
            message = socket.recv() => match message {
                None => return down("closed by the server".to_owned()),
                Some(Err(WsError::Parse(e))) => {
                    tracing::warn!(slot, "{e}");
                }
                Some(Err(e)) => return down(e.to_string()),
                Some(Ok(Incoming::Pong)) => pong_due = None,
                Some(Ok(Incoming::Push(push))) => {
                    last_push = Instant::now();
                    unacked.retain(|(c, _)| *c != push.channel);
                    if parts.events.send(Event::Push { slot, push }).await.is_err() {
                        return End::Stopped;
                    }
                }
                Some(Ok(Incoming::Ack { op, channel: Some(channel) })) if op == "subscribe" => {
                    unacked.retain(|(c, _)| *c != channel);
                }
                Some(Ok(Incoming::Error { code, msg })) => {
                    let over = code == crate::bitget::ws::codes::OVER_LIMIT;
                    // A 30001 names its channel in its text; others say nothing of which
                    // argument they refuse (those wait for the acknowledgement timeout).
                    if let Some(refused) = named_channel(&msg, &unacked) {
                        unacked.retain(|(c, _)| *c != refused);
                        channels.retain(|c| *c != refused);
                        let _ = parts.events.send(Event::Refused { slot, channels: vec![refused], throttled: false }).await;
                    }
                    let _ = parts.events.send(Event::Error { slot, code, msg: msg.clone() }).await;
                    if crate::bitget::ws::codes::is_rate_limit(code) && !over && !unacked.is_empty() {
                        // A throttled subscribe acknowledges none of its channels: they go
                        // back to the feed, to be subscribed again after a backoff.
                        let throttled: Vec<Channel> = unacked.drain(..).map(|(c, _)| c).collect();
                        channels.retain(|c| !throttled.contains(c));
                        let _ = parts.events.send(Event::Refused { slot, channels: throttled, throttled: true }).await;
                    }
                    if over {
                        // Bitget closes the socket after this one.
                        return End::Down { reason: format!("bitget closed the socket: {code} {msg}"), rate_limited: true };
                    }
                }
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                parts.limiter.socket_acquire(&[messages_window(id)]).await;
                if let Err(e) = socket.send(messages::PING).await {
                    return down(e.to_string());
                }
                pong_due.get_or_insert(Instant::now() + config.pong_timeout);
            }
            _ = check.tick() => {
                let now = Instant::now();
                if pong_due.is_some_and(|due| due <= now) {
                    return down(format!("no pong within {:?}", config.pong_timeout));
                }
                if !channels.is_empty() && now.duration_since(last_push) >= config.silent_after {
                    return down(format!("no push for {:?} although subscribed", config.silent_after));
                }
                let (refused, waiting): (Vec<_>, Vec<_>) = unacked.drain(..).partition(|(_, due)| *due <= now);
                unacked = waiting;
                if !refused.is_empty() {
                    let refused: Vec<Channel> = refused.into_iter().map(|(c, _)| c).collect();
                    channels.retain(|c| !refused.contains(c));
                    let _ = parts.events.send(Event::Refused { slot, channels: refused, throttled: false }).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::market::Symbol;
    use crate::core::timeframe::{Market, Timeframe};

    #[test]
    fn a_30001_text_names_the_pending_channel_it_refuses() {
        let channel = |s: &str, tf: &str| Channel {
            symbol: Symbol::from_exchange(s),
            timeframe: Timeframe::parse(Market::Futures, tf).unwrap(),
        };
        let now = Instant::now();
        let pending = vec![
            (channel("BTCUSDT", "1m"), now),
            (channel("NOPEUSDT", "5m"), now),
        ];
        let msg = "instType:USDT-FUTURES,channel:candle5m,instId:NOPEUSDT doesn't exist";
        assert_eq!(
            named_channel(msg, &pending),
            Some(channel("NOPEUSDT", "5m"))
        );
        // Another spelling, another symbol, or no detail at all: nothing named.
        assert_eq!(
            named_channel(
                "instType:USDT-FUTURES,channel:candle1m,instId:NOPEUSDT doesn't exist",
                &pending
            ),
            None
        );
        assert_eq!(named_channel("Param error", &pending), None);
    }
}
