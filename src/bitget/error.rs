//! Everything that can go wrong talking to Bitget, as one enum that classifies itself.
//!
//! The poller never inspects message text: each failure is sorted once, here, into what to do
//! about it. A rate limit holds the endpoint; a transient failure (5xx, HTML from the
//! CDN, timeouts, resets, broken JSON, Bitget's "busy" codes) is retried with backoff; a bad
//! symbol is parked; an auth failure stops the run with a message naming what to fix.
//!
//! Rate-limit body codes come from configuration. The default set is `429` plus `30001`,
//! `30002` and `30003`, because the bot's operators asked for those. Bitget itself documents
//! only `429` (with HTTP 429) for REST rate limits. `30001`–`30003` are not in Bitget's v2
//! REST error list: `30001` is "channel does not exist" on Bitget's WebSocket API, and ccxt
//! maps all three to authentication errors inherited from an OKX-style table.

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::limiter::backoff::Backoff;

/// What the caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Hold the endpoint until its window drains (or for the backoff delay), then retry.
    RateLimited,
    /// Retry this request with backoff.
    Transient,
    /// The local clock is off: resync with `/api/v2/public/time` and retry once.
    ClockSkew,
    /// Park the symbol, report it once, retry it rarely.
    BadSymbol,
    /// Stop: the credentials are wrong. Retrying cannot help.
    Auth,
    /// The request itself is wrong; retrying the same request cannot help.
    Rejected,
}

/// Bitget codes that mean "try again later" (maintenance, release window, internal timeouts).
pub const TRANSIENT_CODES: &[&str] = &[
    "40015", // System is abnormal, please try again later
    "45001", // Unknown error (Bitget's FAQ: retry during the release window)
    "40725", // service return an error
    "40200", // Server upgrade, please try again later
    "40010", // Request timed out
];

/// Bitget codes that mean this symbol cannot be served now.
pub const BAD_SYMBOL_CODES: &[&str] = &[
    "40034", // Parameter {0} does not exist (unknown symbol)
    "40309", // The contract has been removed
    "40102", // Symbol does not exist
    "41113", // symbol offline
];

/// Of [`BAD_SYMBOL_CODES`], those that say the symbol is gone (removed, offline) rather
/// than unknown, which is more often a glitch than a delisting.
pub const SYMBOL_GONE_CODES: &[&str] = &["40309", "41113"];

/// Bitget codes that mean the credentials (or their permissions) are wrong.
pub const AUTH_CODES: &[&str] = &[
    "40001", // ACCESS_KEY cannot be empty
    "40002", // ACCESS_SIGN cannot be empty
    "40003", // Signature cannot be empty
    "40005", // Invalid ACCESS_TIMESTAMP
    "40006", // Invalid ACCESS_KEY
    "40009", // sign signature error
    "40011", // ACCESS_PASSPHRASE cannot be empty
    "40012", // apikey/password is incorrect
    "40014", // Incorrect permissions
    "40018", // Invalid IP
    "40037", // Apikey does not exist
];

/// Bitget's "Request timestamp expired": the local clock is more than 30 s off.
pub const CLOCK_SKEW_CODE: &str = "40008";

/// Bitget codes meaning "no such order" on detail, cancel and friends.
pub const ORDER_NOT_FOUND_CODES: &[&str] = &["40109", "43001", "40768"];

/// Bitget's "duplicate clientOid": an order with that id already exists.
pub const DUPLICATE_CLIENT_OID_CODE: &str = "45034";

/// The rate-limit body codes used when the configuration names none.
pub const DEFAULT_RATE_LIMIT_CODES: &[&str] = &["429", "30001", "30002", "30003"];

/// [`DEFAULT_RATE_LIMIT_CODES`] as the owned list a [`Classifier`] and the config hold.
pub fn default_rate_limit_codes() -> Vec<String> {
    DEFAULT_RATE_LIMIT_CODES
        .iter()
        .map(|c| (*c).to_owned())
        .collect()
}

/// One failed Bitget request, with what is needed to report and handle it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BitgetError {
    #[error("bitget rate-limited {endpoint} (http {status}, code {code})")]
    RateLimited {
        endpoint: String,
        status: u16,
        code: String,
        retry_after: Option<Duration>,
    },
    #[error("bitget answered {endpoint} with http {status}{}", if *html { " and an html page" } else { "" })]
    Unavailable {
        endpoint: String,
        status: u16,
        html: bool,
        retry_after: Option<Duration>,
    },
    #[error("request to {endpoint} timed out")]
    Timeout { endpoint: String },
    #[error("connection to bitget failed on {endpoint}: {detail}")]
    Connection { endpoint: String, detail: String },
    #[error("malformed reply from {endpoint}: {detail}")]
    Malformed { endpoint: String, detail: String },
    #[error("bitget is busy on {endpoint} (code {code}: {msg})")]
    Busy {
        endpoint: String,
        code: String,
        msg: String,
    },
    #[error("bitget says the local clock is off (code {code}: {msg})")]
    ClockSkew { code: String, msg: String },
    #[error("bitget cannot serve symbol {symbol} (code {code}: {msg})")]
    BadSymbol {
        symbol: String,
        code: String,
        msg: String,
    },
    #[error(
        "bitget rejected the api credentials (code {code}: {msg}); {}",
        auth_advice(code)
    )]
    Auth { code: String, msg: String },
    /// Our own credentials cannot be used, found before anything was sent (no venue code).
    #[error("the api credentials cannot be used: {detail}; check BITGET_API_KEY, BITGET_API_SECRET and BITGET_API_PASSPHRASE")]
    LocalCredentials { detail: String },
    #[error("bitget rejected the request to {endpoint} (http {status}, code {code}: {msg})")]
    Rejected {
        endpoint: String,
        status: u16,
        code: String,
        msg: String,
    },
}

impl BitgetError {
    /// What to do about this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::RateLimited { .. } => ErrorClass::RateLimited,
            Self::Unavailable { .. }
            | Self::Timeout { .. }
            | Self::Connection { .. }
            | Self::Malformed { .. }
            | Self::Busy { .. } => ErrorClass::Transient,
            Self::ClockSkew { .. } => ErrorClass::ClockSkew,
            Self::BadSymbol { .. } => ErrorClass::BadSymbol,
            Self::Auth { .. } | Self::LocalCredentials { .. } => ErrorClass::Auth,
            Self::Rejected { .. } => ErrorClass::Rejected,
        }
    }

    /// Whether the same request may be sent again (after backoff).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::RateLimited | ErrorClass::Transient | ErrorClass::ClockSkew
        )
    }

    /// Bitget's body code, when the reply had one.
    /// Whether Bitget said the symbol was removed or is offline: definitive at once.
    pub fn symbol_gone(&self) -> bool {
        self.code().is_some_and(|c| SYMBOL_GONE_CODES.contains(&c))
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Self::RateLimited { code, .. }
            | Self::Busy { code, .. }
            | Self::ClockSkew { code, .. }
            | Self::BadSymbol { code, .. }
            | Self::Auth { code, .. }
            | Self::Rejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A server-given wait (`Retry-After`), which wins over the computed backoff.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// Which credential an auth code points at, and what to do about it.
pub fn auth_advice(code: &str) -> &'static str {
    match code {
        "40006" | "40037" => "BITGET_API_KEY is not a key bitget knows; copy the key id again or create a new key",
        "40009" => "BITGET_API_SECRET does not match BITGET_API_KEY (the signature is wrong); copy the secret again",
        "40012" => "BITGET_API_PASSPHRASE is wrong for BITGET_API_KEY; use the passphrase chosen when the key was created",
        "40014" => "the key lacks a permission; enable futures read and trade for BITGET_API_KEY",
        "40018" => "the key is bound to other IP addresses; add this machine's IP to BITGET_API_KEY's whitelist",
        "40001" | "40002" | "40003" | "40005" | "40011" => {
            "a signed header was empty or malformed; check BITGET_API_KEY, BITGET_API_SECRET and BITGET_API_PASSPHRASE"
        }
        _ => "check BITGET_API_KEY, BITGET_API_SECRET and BITGET_API_PASSPHRASE",
    }
}

/// The envelope fields needed to judge a reply. `data` is only delimited here, not built:
/// the typed parsers read it from where it lies, so a reply is parsed once.
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    code: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    msg: Option<std::borrow::Cow<'a, str>>,
    /// Server time in ms: a number in the docs, a string in some recordings.
    #[serde(rename = "requestTime", default)]
    request_time: Option<RequestTime<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RequestTime<'a> {
    Number(u64),
    #[serde(borrow)]
    Text(std::borrow::Cow<'a, str>),
    /// Anything else (a float, null, an object): no time, and the envelope still reads.
    Other(serde::de::IgnoredAny),
}

impl RequestTime<'_> {
    fn millis(&self) -> Option<u64> {
        match self {
            Self::Number(ms) => Some(*ms),
            Self::Text(text) => text.trim().parse().ok(),
            Self::Other(_) => None,
        }
    }
}

/// Sorts HTTP replies into success or a [`BitgetError`], with a configurable rate-limit set.
#[derive(Debug, Clone)]
pub struct Classifier {
    rate_limit_codes: Vec<String>,
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new(default_rate_limit_codes())
    }
}

/// What [`Classifier::judge_reply`] found in one reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The reply's `requestTime`, in server ms.
    pub server_ms: Option<u64>,
    pub verdict: Result<(), BitgetError>,
    /// The byte range of the envelope's `data` in the body.
    pub data: Option<std::ops::Range<usize>>,
}

impl Classifier {
    /// A classifier treating `rate_limit_codes` (body codes) as rate limiting, besides HTTP 429.
    pub fn new(rate_limit_codes: Vec<String>) -> Self {
        Self { rate_limit_codes }
    }

    /// Checks one reply. `Ok` means HTTP 2xx with code `00000`; the body is then the caller's
    /// to parse. `retry_after` is the raw `Retry-After` header, if any.
    ///
    /// # Errors
    /// Every other reply, classified.
    pub fn check(
        &self,
        endpoint: &str,
        symbol: Option<&str>,
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
    ) -> Result<(), BitgetError> {
        self.check_timed(endpoint, symbol, status, retry_after, body)
            .1
    }

    /// [`Self::check`], also returning the reply's `requestTime` (server ms) when it has
    /// one, from the same single parse of the envelope.
    pub fn check_timed(
        &self,
        endpoint: &str,
        symbol: Option<&str>,
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
    ) -> (Option<u64>, Result<(), BitgetError>) {
        let judged = self.judge_reply(endpoint, symbol, status, retry_after, body);
        (judged.server_ms, judged.verdict)
    }

    /// Judges one reply from a single parse of its envelope: the verdict, the
    /// `requestTime`, and where in `body` its `data` lies, for the typed parser to read.
    pub fn judge_reply(
        &self,
        endpoint: &str,
        symbol: Option<&str>,
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
    ) -> Judged {
        let envelope = serde_json::from_slice::<Envelope<'_>>(body).ok();
        let server_ms = envelope
            .as_ref()
            .and_then(|e| e.request_time.as_ref())
            .and_then(RequestTime::millis);
        let data = envelope.as_ref().and_then(|e| e.data).map(|raw| {
            // The raw value borrows from `body`: its offset is where it starts.
            let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
            start..start + raw.get().len()
        });
        let verdict = self.judge(endpoint, symbol, status, retry_after, body, envelope);
        Judged {
            server_ms,
            verdict,
            data,
        }
    }

    fn judge(
        &self,
        endpoint: &str,
        symbol: Option<&str>,
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
        envelope: Option<Envelope<'_>>,
    ) -> Result<(), BitgetError> {
        let endpoint = endpoint.to_owned();
        let retry_after = retry_after.and_then(parse_retry_after);
        let code = envelope.as_ref().and_then(|e| e.code.as_deref());
        let msg = envelope
            .as_ref()
            .and_then(|e| e.msg.as_deref())
            .unwrap_or("")
            .to_owned();
        let is_rate_limit_code = code.is_some_and(|c| self.rate_limit_codes.iter().any(|r| r == c));
        if status == 429 || is_rate_limit_code {
            let code = code.unwrap_or("429").to_owned();
            return Err(BitgetError::RateLimited {
                endpoint,
                status,
                code,
                retry_after,
            });
        }
        let Some(code) = code else {
            // No Bitget envelope: a CDN page, an empty body or JSON cut short.
            let html = body.iter().take(512).any(|b| *b == b'<');
            if status >= 500 || html {
                return Err(BitgetError::Unavailable {
                    endpoint,
                    status,
                    html,
                    retry_after,
                });
            }
            let detail = match serde_json::from_slice::<serde_json::Value>(body) {
                Err(error) => format!("not json ({error}) with http {status}"),
                Ok(_) => format!("json without a code with http {status}"),
            };
            return Err(BitgetError::Malformed { endpoint, detail });
        };
        if code == "00000" && (200..300).contains(&status) {
            return Ok(());
        }
        let code_owned = code.to_owned();
        if TRANSIENT_CODES.contains(&code) {
            return Err(BitgetError::Busy {
                endpoint,
                code: code_owned,
                msg,
            });
        }
        if BAD_SYMBOL_CODES.contains(&code) {
            let symbol = symbol.unwrap_or("?").to_owned();
            return Err(BitgetError::BadSymbol {
                symbol,
                code: code_owned,
                msg,
            });
        }
        if AUTH_CODES.contains(&code) {
            return Err(BitgetError::Auth {
                code: code_owned,
                msg,
            });
        }
        if code == CLOCK_SKEW_CODE {
            return Err(BitgetError::ClockSkew {
                code: code_owned,
                msg,
            });
        }
        if status >= 500 {
            return Err(BitgetError::Unavailable {
                endpoint,
                status,
                html: false,
                retry_after,
            });
        }
        Err(BitgetError::Rejected {
            endpoint,
            status,
            code: code_owned,
            msg,
        })
    }
}

/// `Retry-After` in seconds (Bitget documents none; an HTTP date is not expected from it).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

impl BitgetError {
    /// The delay before retrying after this error under `backoff`, or `None` when it must
    /// not be retried (or retries are used up). A server's `Retry-After` wins, capped.
    pub fn retry_delay(&self, backoff: &Backoff, retry: u32, jitter_unit: f64) -> Option<Duration> {
        if !self.is_retryable() {
            return None;
        }
        let computed = backoff.delay(retry, jitter_unit)?;
        Some(
            self.retry_after()
                .map_or(computed, |server| server.min(backoff.cap)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(code: &str) -> Vec<u8> {
        format!(r#"{{"code":"{code}","msg":"m","requestTime":1,"data":null}}"#).into_bytes()
    }

    #[test]
    fn every_listed_code_has_its_class() {
        let c = Classifier::default();
        let class = |status: u16, code: &str| {
            c.check("/e", Some("BTCUSDT"), status, None, &envelope(code))
                .unwrap_err()
                .class()
        };
        for code in DEFAULT_RATE_LIMIT_CODES {
            assert_eq!(class(400, code), ErrorClass::RateLimited, "{code}");
        }
        for code in TRANSIENT_CODES {
            assert_eq!(class(400, code), ErrorClass::Transient, "{code}");
        }
        for code in BAD_SYMBOL_CODES {
            assert_eq!(class(400, code), ErrorClass::BadSymbol, "{code}");
        }
        for code in AUTH_CODES {
            assert_eq!(class(400, code), ErrorClass::Auth, "{code}");
        }
        assert_eq!(class(400, "40008"), ErrorClass::ClockSkew);
        assert_eq!(class(400, "40020"), ErrorClass::Rejected);
        assert_eq!(class(500, "40020"), ErrorClass::Transient);
        assert!(c.check("/e", None, 200, None, &envelope("00000")).is_ok());
    }

    #[test]
    fn the_server_time_is_read_from_the_same_parse_as_a_number_or_a_string() {
        let c = Classifier::default();
        let ok = br#"{"code":"00000","msg":"success","requestTime":1695794095685,"data":[]}"#;
        let (time, verdict) = c.check_timed("/x", None, 200, None, ok);
        assert_eq!((time, verdict), (Some(1_695_794_095_685), Ok(())));
        let rows = br#"{"code":"00000","data":[["1","2"]],"msg":"success"}"#;
        let judged = c.judge_reply("/x", None, 200, None, rows);
        assert_eq!(&rows[judged.data.unwrap()], br#"[["1","2"]]"#);
        let limited = br#"{"code":"429","msg":"Too Many Requests","requestTime":"1748721720474","data":null}"#;
        let (time, verdict) = c.check_timed("/x", None, 429, None, limited);
        assert_eq!(time, Some(1_748_721_720_474));
        assert_eq!(verdict.unwrap_err().class(), ErrorClass::RateLimited);
        // No envelope, or a stamp that is not a number: no time, the verdict unchanged.
        assert_eq!(c.check_timed("/x", None, 502, None, b"<html>").0, None);
        for junk in [
            br#"{"code":"00000","requestTime":"soon","data":[]}"#.as_slice(),
            br#"{"code":"00000","requestTime":-1.5,"data":[]}"#,
            br#"{"code":"00000","requestTime":{"a":1},"data":[]}"#,
        ] {
            assert_eq!(c.check_timed("/x", None, 200, None, junk), (None, Ok(())));
        }
    }

    #[test]
    fn http_429_is_rate_limited_whatever_the_body() {
        let c = Classifier::new(vec!["429".into()]);
        let error = c.check("/e", None, 429, Some("2"), b"").unwrap_err();
        assert_eq!(error.class(), ErrorClass::RateLimited);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
        // With a narrower configured set, 30001 is just a rejected request.
        assert_eq!(
            c.check("/e", None, 400, None, &envelope("30001"))
                .unwrap_err()
                .class(),
            ErrorClass::Rejected
        );
    }

    #[test]
    fn html_pages_empty_and_truncated_bodies_are_transient() {
        let c = Classifier::default();
        let page = b"<html><head><title>502 Bad Gateway</title></head></html>";
        let html = c.check("/e", None, 502, None, page).unwrap_err();
        assert!(matches!(
            html,
            BitgetError::Unavailable {
                status: 502,
                html: true,
                ..
            }
        ));
        let cut = c
            .check("/e", None, 200, None, br#"{"code":"00000","msg":"succ"#)
            .unwrap_err();
        assert!(matches!(cut, BitgetError::Malformed { .. }), "{cut:?}");
        assert!(cut.is_retryable());
        assert_eq!(
            c.check("/e", None, 503, None, b"").unwrap_err().class(),
            ErrorClass::Transient
        );
    }

    #[test]
    fn messages_name_the_problem_and_the_fix() {
        let c = Classifier::default();
        let auth = c
            .check("/e", None, 400, None, &envelope("40009"))
            .unwrap_err()
            .to_string();
        assert!(
            auth.contains("BITGET_API_SECRET")
                && auth.starts_with("bitget rejected the api credentials"),
            "{auth}"
        );
        let parked = c
            .check("/e", Some("FOOUSDT"), 400, None, &envelope("40034"))
            .unwrap_err()
            .to_string();
        assert_eq!(parked, "bitget cannot serve symbol FOOUSDT (code 40034: m)");
        assert!(!BitgetError::Auth {
            code: "40009".into(),
            msg: String::new()
        }
        .is_retryable());
    }

    const MID: f64 = 0.5; // jitter factor exactly 1.0

    #[test]
    fn retry_after_wins_but_is_capped_and_fatal_errors_are_not_retried() {
        let b = Backoff::default();
        let limited = |secs| BitgetError::RateLimited {
            endpoint: "/e".into(),
            status: 429,
            code: "429".into(),
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            limited(7).retry_delay(&b, 0, MID),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            limited(600).retry_delay(&b, 0, MID),
            Some(Duration::from_secs(30))
        );
        assert_eq!(limited(7).retry_delay(&b, 5, MID), None, "retries used up");
        let auth = BitgetError::Auth {
            code: "40009".into(),
            msg: String::new(),
        };
        assert_eq!(auth.retry_delay(&b, 0, MID), None);
    }
}
