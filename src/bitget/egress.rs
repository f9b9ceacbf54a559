//! Several ways out to Bitget: each egress is a local source address or a proxy, with its
//! own IP-metered budgets (Bitget meters market data per IP), so K egresses carry K times
//! the candles of one.
//!
//! Which egress a market request takes is the limiter's choice among the healthy ones
//! (the least loaded with room). An egress whose requests keep failing on the way (no
//! reply at all: refused, reset, timed out) is taken out and probed back in after a pause
//! that doubles while probes fail; a reply of any status proves it works. Signed requests
//! keep to one egress per account, because API keys are often bound to whitelisted IPs.
//!
//! The health state is a pure function of explicit time ([`Health`]), tested without a
//! runtime.

use std::net::IpAddr;

use crate::core::text::redact_url;
use std::sync::Mutex;
use std::time::Duration;

/// One way out, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressConfig {
    /// Its name in logs, metrics and shared (Redis) budgets: instances whose egresses
    /// share a public address should give them the same name.
    pub name: String,
    pub route: EgressRoute,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRoute {
    /// The system's default route.
    Default,
    /// Connections bound to this local source address.
    LocalAddress(IpAddr),
    /// Through a proxy (`socks5://`, `socks5h://`, `http://` or `https://`).
    Proxy(String),
}

impl EgressConfig {
    /// The single default egress.
    pub fn default_route() -> Self {
        Self {
            name: "default".to_owned(),
            route: EgressRoute::Default,
        }
    }

    /// How it goes out, for logs (a proxy's password is not shown).
    pub fn describe(&self) -> String {
        match &self.route {
            EgressRoute::Default => "default route".to_owned(),
            EgressRoute::LocalAddress(ip) => format!("from {ip}"),
            EgressRoute::Proxy(url) => format!("via {}", redact_url(url)),
        }
    }
}

/// Checks a proxy URL; the message names the key.
///
/// # Errors
/// Not a URL, or a scheme reqwest cannot proxy through.
pub fn check_proxy(key: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("{key} = {url:?} is not a url ({e}); write socks5://host:port or http://host:port")
    })?;
    match parsed.scheme() {
        "socks5" | "socks5h" | "http" | "https" => {}
        other => {
            return Err(format!(
                "{key} = {url:?} has scheme {other:?}; allowed socks5, socks5h, http, https"
            ))
        }
    }
    reqwest::Proxy::all(url)
        .map(|_| ())
        .map_err(|e| format!("{key} = {url:?} cannot be used as a proxy ({e})"))
}

/// Failures in a row (no reply at all) that take an egress out.
pub const FAILURES_TO_EXCLUDE: u32 = 3;
/// The first pause before an excluded egress is probed; it doubles up to [`PROBE_MAX`].
pub const PROBE_MIN: Duration = Duration::from_secs(5);
pub const PROBE_MAX: Duration = Duration::from_secs(120);

/// The health of every egress, on an explicit clock (µs since any origin).
#[derive(Debug)]
pub struct Health {
    state: Mutex<Vec<EgressHealth>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressHealth {
    /// Failures in a row.
    pub failures: u32,
    /// Out until then (µs); 0 when in.
    pub out_until: u64,
    /// Exclusions in a row (each probe that failed).
    pub exclusions: u32,
    /// Times taken out since start.
    pub taken_out: u64,
}

/// What a reported outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Taken out until the given time (µs).
    TakenOut {
        until: u64,
    },
    /// Back in after being out.
    BackIn,
}

impl Health {
    pub fn new(count: usize) -> Self {
        Self {
            state: Mutex::new(vec![EgressHealth::default(); count.max(1)]),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<EgressHealth>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The egresses a request may use at `now`, as a bit mask: those in, plus those whose
    /// probe is due. When every one is out, all of them: requests still have to go
    /// somewhere, and each is a probe.
    pub fn usable(&self, now: u64) -> u32 {
        let state = self.lock();
        let all = (1u64 << state.len().min(32)) - 1;
        let mask = state
            .iter()
            .enumerate()
            .filter(|(_, h)| h.out_until <= now)
            .fold(0u32, |m, (i, _)| m | (1 << i));
        if mask == 0 {
            all as u32
        } else {
            mask
        }
    }

    /// A reply of any status came back through `egress`.
    pub fn replied(&self, egress: u16) -> Change {
        let mut state = self.lock();
        let Some(h) = state.get_mut(usize::from(egress)) else {
            return Change::None;
        };
        let was_out = h.exclusions > 0;
        h.failures = 0;
        h.exclusions = 0;
        h.out_until = 0;
        if was_out {
            Change::BackIn
        } else {
            Change::None
        }
    }

    /// No reply came back through `egress` at `now`.
    pub fn failed(&self, egress: u16, now: u64) -> Change {
        let mut state = self.lock();
        let Some(h) = state.get_mut(usize::from(egress)) else {
            return Change::None;
        };
        h.failures += 1;
        // Out already and not yet due: a request that left before it was taken out.
        if h.out_until > now {
            return Change::None;
        }
        if h.failures < FAILURES_TO_EXCLUDE && h.exclusions == 0 {
            return Change::None;
        }
        let pause = PROBE_MIN
            .saturating_mul(1 << h.exclusions.min(10))
            .min(PROBE_MAX);
        h.exclusions += 1;
        h.taken_out += 1;
        h.out_until = now + pause.as_micros() as u64;
        Change::TakenOut { until: h.out_until }
    }

    /// Each egress's state, for reports.
    pub fn snapshot(&self) -> Vec<EgressHealth> {
        self.lock().clone()
    }
}

/// Builds the HTTP client of one egress.
///
/// # Errors
/// The proxy or TLS backend cannot be set up.
pub fn client(
    builder: reqwest::ClientBuilder,
    egress: &EgressConfig,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = match &egress.route {
        EgressRoute::Default => builder,
        EgressRoute::LocalAddress(ip) => builder.local_address(*ip),
        EgressRoute::Proxy(url) => builder.proxy(reqwest::Proxy::all(url)?),
    };
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn three_failures_take_an_egress_out_and_a_reply_brings_it_back() {
        let health = Health::new(2);
        assert_eq!(health.usable(0), 0b11);
        assert_eq!(health.failed(1, 0), Change::None);
        assert_eq!(health.failed(1, 0), Change::None);
        assert_eq!(health.failed(1, 0), Change::TakenOut { until: 5 * S });
        assert_eq!(health.usable(S), 0b01);
        // Due for a probe at 5 s; the probe fails: out for twice as long.
        assert_eq!(health.usable(5 * S), 0b11);
        assert_eq!(health.failed(1, 5 * S), Change::TakenOut { until: 15 * S });
        assert_eq!(health.usable(6 * S), 0b01);
        // A request sent before it was taken out fails too: no extension.
        assert_eq!(health.failed(1, 7 * S), Change::None);
        assert_eq!(health.replied(1), Change::BackIn);
        assert_eq!(health.usable(8 * S), 0b11);
        assert_eq!(health.snapshot()[1].taken_out, 2);
        // A reply between failures resets the count.
        health.failed(0, 9 * S);
        health.failed(0, 9 * S);
        health.replied(0);
        assert_eq!(health.failed(0, 9 * S), Change::None);
    }

    #[test]
    fn when_every_egress_is_out_all_are_tried() {
        let health = Health::new(2);
        for _ in 0..3 {
            health.failed(0, 0);
            health.failed(1, 0);
        }
        assert_eq!(health.usable(S), 0b11);
    }

    #[test]
    fn proxies_are_checked_and_passwords_hidden() {
        assert!(check_proxy("egress[0].proxy", "socks5://127.0.0.1:1080").is_ok());
        assert!(check_proxy("egress[0].proxy", "http://u:p@127.0.0.1:3128").is_ok());
        let e = check_proxy("egress[0].proxy", "ftp://127.0.0.1").unwrap_err();
        assert_eq!(
            e,
            "egress[0].proxy = \"ftp://127.0.0.1\" has scheme \"ftp\"; allowed socks5, socks5h, http, https"
        );
        let egress = EgressConfig {
            name: "p".into(),
            route: EgressRoute::Proxy("http://u:secret@10.0.0.1:3128".into()),
        };
        assert_eq!(egress.describe(), "via http://u:***@10.0.0.1:3128/");
    }
}
