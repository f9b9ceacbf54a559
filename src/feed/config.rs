//! `[feed]`: where live candles come from and how the sockets behave, checked here.

use std::time::Duration;

use serde::Deserialize;

use crate::core::check::Checker;

/// Where live candles come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// REST polling only, as before the feed.
    Rest,
    /// The WebSocket, with REST confirming closes the socket cannot prove and filling gaps.
    Ws,
    /// The WebSocket as `ws`, and REST polling for a series whose socket stays down longer
    /// than `rest_fallback_after`.
    Auto,
}

/// The feed's checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    pub source: Source,
    /// Channels per socket (Bitget recommends at most 50, allows 1000).
    pub channels_per_socket: usize,
    /// A series whose socket is down this long is polled by REST until it is back.
    pub rest_fallback_after: Duration,
    /// A bar the socket has said nothing about this long after its close is read by REST.
    pub close_grace: Duration,
    /// A socket with subscriptions but no push for this long is dead.
    pub silent_after: Duration,
    /// A `ping` unanswered this long means the socket is dead.
    pub pong_timeout: Duration,
    /// Reconnect delays: the first, and the most (doubling between, with jitter).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// REST reads confirming or filling bars at once.
    pub rest_workers: usize,
    /// A close the socket could not prove, of a timeframe made exactly of a shorter one
    /// carried for the same symbol (a 5m of 1m, a 15m of 5m), is built from that one's
    /// closes instead of read by REST.
    pub derive_closes: bool,
    /// Every this many closes built so, one is read by REST as well and compared; a
    /// mismatch is logged with both rows and turns building off for that series. 0: never.
    pub derive_check_every: u64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            source: Source::Auto,
            channels_per_socket: 50,
            rest_fallback_after: Duration::from_secs(60),
            close_grace: Duration::from_secs(3),
            silent_after: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            rest_workers: 16,
            derive_closes: true,
            derive_check_every: 50,
        }
    }
}

/// `[feed]` as written; every key defaults to [`FeedConfig::default`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSection {
    source: String,
    channels_per_socket: usize,
    rest_fallback_after_secs: f64,
    close_grace_secs: f64,
    silent_after_secs: f64,
    pong_timeout_secs: f64,
    reconnect_min_secs: f64,
    reconnect_max_secs: f64,
    rest_workers: usize,
    derive_closes: bool,
    derive_check_every: u64,
}

impl Default for FeedSection {
    fn default() -> Self {
        let d = FeedConfig::default();
        Self {
            source: "auto".to_owned(),
            channels_per_socket: d.channels_per_socket,
            rest_fallback_after_secs: d.rest_fallback_after.as_secs_f64(),
            close_grace_secs: d.close_grace.as_secs_f64(),
            silent_after_secs: d.silent_after.as_secs_f64(),
            pong_timeout_secs: d.pong_timeout.as_secs_f64(),
            reconnect_min_secs: d.reconnect_min.as_secs_f64(),
            reconnect_max_secs: d.reconnect_max.as_secs_f64(),
            rest_workers: d.rest_workers,
            derive_closes: d.derive_closes,
            derive_check_every: d.derive_check_every,
        }
    }
}

impl FeedSection {
    /// The feed's settings; problems go to `c`.
    pub fn check(&self, c: &mut Checker) -> FeedConfig {
        let source = match self.source.as_str() {
            "rest" => Source::Rest,
            "ws" => Source::Ws,
            "auto" => Source::Auto,
            other => {
                c.problem(format!(
                    "feed.source = \"{other}\" is not known; allowed \"rest\", \"ws\" or \"auto\""
                ));
                Source::Auto
            }
        };
        let reconnect_min = c.secs(
            "feed.reconnect_min_secs",
            self.reconnect_min_secs,
            0.1,
            60.0,
        );
        let reconnect_max = c.secs(
            "feed.reconnect_max_secs",
            self.reconnect_max_secs,
            0.1,
            3600.0,
        );
        if reconnect_max < reconnect_min {
            c.problem(format!(
                "feed.reconnect_max_secs = {} is below feed.reconnect_min_secs = {}; raise it",
                self.reconnect_max_secs, self.reconnect_min_secs
            ));
        }
        FeedConfig {
            source,
            channels_per_socket: c.range(
                "feed.channels_per_socket",
                self.channels_per_socket,
                1,
                1000,
            ),
            rest_fallback_after: c.secs(
                "feed.rest_fallback_after_secs",
                self.rest_fallback_after_secs,
                1.0,
                86_400.0,
            ),
            close_grace: c.secs("feed.close_grace_secs", self.close_grace_secs, 0.0, 600.0),
            silent_after: c.secs("feed.silent_after_secs", self.silent_after_secs, 2.0, 600.0),
            pong_timeout: c.secs("feed.pong_timeout_secs", self.pong_timeout_secs, 1.0, 120.0),
            reconnect_min,
            reconnect_max,
            rest_workers: c.range("feed.rest_workers", self.rest_workers, 1, 64),
            derive_closes: self.derive_closes,
            derive_check_every: self.derive_check_every,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (FeedConfig, Vec<String>) {
        let section: FeedSection = toml::from_str(text).unwrap();
        let mut c = Checker::new();
        let config = section.check(&mut c);
        (config, c.into_problems())
    }

    #[test]
    fn defaults_and_each_bad_value_named() {
        let (config, problems) = check("");
        assert_eq!(config, FeedConfig::default());
        assert!(problems.is_empty());
        let (config, _) = check("source = \"ws\"\nchannels_per_socket = 20");
        assert_eq!(
            (config.source, config.channels_per_socket),
            (Source::Ws, 20)
        );
        let (_, problems) = check(
            "source = \"socket\"\nchannels_per_socket = 0\nreconnect_min_secs = 10\nreconnect_max_secs = 5\nclose_grace_secs = -1",
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("feed.source = \"socket\""));
        assert!(problems
            .iter()
            .any(|p| p.contains("feed.channels_per_socket = 0")));
        assert!(problems
            .iter()
            .any(|p| p.contains("below feed.reconnect_min_secs")));
        assert!(problems.iter().any(|p| p.contains("feed.close_grace_secs")));
        assert!(toml::from_str::<FeedSection>("sorce = \"ws\"").is_err());
    }
}
