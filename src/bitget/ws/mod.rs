//! Bitget's public WebSocket (`/v2/ws/public`): its limits, its messages, and a client.
//!
//! Live candles over the socket cost no REST budget: one subscription per (market,
//! timeframe, symbol) channel, pushed about once a second. Everything Bitget-specific about
//! the socket lives here, as the REST knowledge lives in the rest of the adapter: the limits
//! (one table, [`LIMITS`]), the subscribe messages and their batching ([`messages`]), the
//! pushes and events ([`parse`]), and the connection with its keep-alive ([`client`]).
//! Sources: `../shared/ws-store-status-anchors.md` §1.

pub mod client;
pub mod messages;
pub mod parse;

use std::time::Duration;

/// The public socket's path on Bitget's WebSocket host.
pub const PATH: &str = "/v2/ws/public";
/// Bitget's own socket, for Bitget's own REST base URL.
pub const BITGET_WS_URL: &str = "wss://ws.bitget.com/v2/ws/public";

/// Bitget's WebSocket limits, as its documentation states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Sockets one IP may hold.
    pub sockets_per_ip: u32,
    /// Connection attempts one IP may make per [`Self::attempt_window`].
    pub attempts_per_ip: u32,
    pub attempt_window: Duration,
    /// Messages a client may send per socket per second, pings included (more closes the
    /// socket: 30007).
    pub messages_per_s: u32,
    /// Subscribe requests per socket per hour (more: 30006).
    pub subscribes_per_hour: u32,
    /// Channels one socket may hold; Bitget recommends at most 50.
    pub channels_per_socket: u32,
    pub recommended_channels: u32,
    /// Bytes of one subscribe's `args`.
    pub max_args_bytes: usize,
    /// A text `ping` is due this often; the server closes a socket without one for
    /// [`Self::server_ping_timeout`].
    pub ping_interval: Duration,
    pub server_ping_timeout: Duration,
}

/// The limits of `wss://ws.bitget.com/v2/ws/public`.
pub const LIMITS: WsLimits = WsLimits {
    sockets_per_ip: 100,
    attempts_per_ip: 300,
    attempt_window: Duration::from_secs(300),
    messages_per_s: 10,
    subscribes_per_hour: 240,
    channels_per_socket: 1000,
    recommended_channels: 50,
    max_args_bytes: 4096,
    ping_interval: Duration::from_secs(30),
    server_ping_timeout: Duration::from_secs(120),
};

/// WebSocket error codes (`{"event":"error","code":…}`).
pub mod codes {
    /// The channel or instrument does not exist.
    pub const NO_SUCH_CHANNEL: u32 = 30001;
    /// Illegal request.
    pub const ILLEGAL_REQUEST: u32 = 30002;
    /// Invalid op.
    pub const INVALID_OP: u32 = 30003;
    /// Too many requests (subscribes per hour, channels).
    pub const TOO_MANY: u32 = 30006;
    /// Over the message limit; the socket is closed.
    pub const OVER_LIMIT: u32 = 30007;
    /// Param error: a channel Bitget does not know (the socket stays open, silent for it).
    pub const PARAM_ERROR: u32 = 30016;

    /// The codes that mean "slow down": counted with REST 429s.
    pub fn is_rate_limit(code: u32) -> bool {
        matches!(code, TOO_MANY | OVER_LIMIT)
    }

    /// The codes that mean the request itself was wrong: back off, and park a channel
    /// refused again and again.
    pub fn is_refusal(code: u32) -> bool {
        matches!(
            code,
            NO_SUCH_CHANNEL | ILLEGAL_REQUEST | INVALID_OP | PARAM_ERROR
        )
    }
}

/// The socket address for REST base URL `base_url`: Bitget's own socket for Bitget's own
/// API host, otherwise the same host and port with `ws://` (`wss://` for `https://`) and
/// [`PATH`], so one `--base-url` points both at a simulator.
///
/// # Errors
/// `base_url` is not an `http://` or `https://` URL.
pub fn url_for(base_url: &str) -> Result<String, String> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let (scheme, rest) = if let Some(rest) = trimmed.strip_prefix("https://") {
        ("wss", rest)
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        ("ws", rest)
    } else {
        return Err(format!(
            "base url '{base_url}' is not http:// or https://; set [exchange] ws_url"
        ));
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!(
            "base url '{base_url}' has no host; set [exchange] ws_url"
        ));
    }
    if host.eq_ignore_ascii_case("api.bitget.com") {
        return Ok(BITGET_WS_URL.to_owned());
    }
    Ok(format!("{scheme}://{host}{PATH}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_follows_the_base_url() {
        assert_eq!(url_for("https://api.bitget.com").unwrap(), BITGET_WS_URL);
        assert_eq!(url_for("https://API.bitget.com/").unwrap(), BITGET_WS_URL);
        assert_eq!(
            url_for("http://127.0.0.1:9800").unwrap(),
            "ws://127.0.0.1:9800/v2/ws/public"
        );
        assert_eq!(
            url_for("https://proxy.example:8443/base").unwrap(),
            "wss://proxy.example:8443/v2/ws/public"
        );
        assert!(url_for("ftp://x").unwrap_err().contains("ws_url"));
        assert!(url_for("http://").is_err());
    }

    #[test]
    fn rate_limit_and_refusal_codes_are_apart() {
        assert!(codes::is_rate_limit(30006) && codes::is_rate_limit(30007));
        assert!(!codes::is_rate_limit(30001));
        assert!(codes::is_refusal(30001) && codes::is_refusal(30016));
        assert!(!codes::is_refusal(30006));
    }
}
