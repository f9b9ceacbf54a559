//! One socket to Bitget's public WebSocket: connect (with `TCP_NODELAY`, so a batch of
//! subscribe messages is not held back by Nagle's algorithm), send text, and read messages
//! parsed once. Pacing (every message through the limiter), keep-alive timing and deciding a
//! socket is dead are the feed's: this module only moves frames.
//!
//! Built on tokio-tungstenite with rustls, the most used Rust WebSocket client, at the version
//! axum's WebSocket (which the simulator serves with) builds on, so one copy is compiled.
//! Bitget documents no compression, so the crates that add permessage-deflate buy nothing.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::parse::{incoming, Incoming, WsParseError};

/// Largest message accepted from the socket (a 1000-row snapshot is about 100 KiB).
const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Why a socket could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error(
        "cannot reach the websocket at {url}: {cause}; check [exchange] ws_url and the network"
    )]
    Connect { url: String, cause: String },
    #[error("the websocket at {url} refused the connection with http {status}; too many connections from this address")]
    Refused { url: String, status: u16 },
    #[error("no websocket connection to {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("websocket closed: {0}")]
    Closed(String),
    #[error(transparent)]
    Parse(#[from] WsParseError),
}

impl WsError {
    /// Whether the exchange said "too many": counted like a REST 429.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Self::Refused { status: 429, .. })
    }
}

/// An open socket.
#[derive(Debug)]
pub struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// Opens a socket to `url` within `timeout`.
///
/// # Errors
/// The address is unreachable, refused the upgrade, or did not answer in time.
pub async fn connect(url: &str, timeout: Duration) -> Result<Socket, WsError> {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let attempt = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(WsError::Timeout {
            url: url.to_owned(),
            timeout,
        }),
        Ok(Err(tungstenite::Error::Http(response))) => Err(WsError::Refused {
            url: url.to_owned(),
            status: response.status().as_u16(),
        }),
        Ok(Err(e)) => Err(WsError::Connect {
            url: url.to_owned(),
            cause: e.to_string(),
        }),
        Ok(Ok((stream, _))) => Ok(Socket { stream }),
    }
}

impl Socket {
    /// Sends one text message.
    ///
    /// # Errors
    /// The socket is closed.
    pub async fn send(&mut self, text: &str) -> Result<(), WsError> {
        self.stream
            .send(Message::text(text))
            .await
            .map_err(|e| WsError::Closed(e.to_string()))
    }

    /// The next message, parsed; `None` once the socket closed. Protocol pings are answered
    /// by the library; binary frames are not Bitget's and are skipped.
    pub async fn recv(&mut self) -> Option<Result<Incoming, WsError>> {
        loop {
            match self.stream.next().await? {
                Ok(Message::Text(text)) => {
                    return Some(incoming(text.as_str()).map_err(WsError::from))
                }
                Ok(Message::Close(frame)) => {
                    return Some(Err(WsError::Closed(frame.map_or_else(
                        || "by the server".to_owned(),
                        |f| f.reason.to_string(),
                    ))))
                }
                Ok(_) => {}
                Err(e) => return Some(Err(WsError::Closed(e.to_string()))),
            }
        }
    }

    /// Closes the socket politely, giving up after a second.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bitget's socket is `wss://`: the TLS side (rustls, its crypto provider and roots) is
    /// set up and tried, and a peer that is not a TLS server gives an error, not a panic.
    #[tokio::test]
    async fn a_wss_address_reaches_the_tls_handshake_and_fails_cleanly() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            use tokio::io::AsyncWriteExt as _;
            let _ = stream.write_all(b"HTTP/1.1 400 not tls\r\n\r\n").await;
        });
        let error = connect(
            &format!("wss://{addr}/v2/ws/public"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, WsError::Connect { .. }), "{error}");
        assert!(error.to_string().contains("ws_url"), "{error}");
        server.await.unwrap();
    }
}
