//! Checks Bitget's `ACCESS-*` headers on signed requests, in the order Bitget reports them.
//!
//! Header presence first (`40001` key, `40003` signature, `40005` timestamp, `40011`
//! passphrase), then the key (`40006`), the timestamp window (`40008`, more than 30 s off),
//! the passphrase (`40012`) and last the signature (`40009`).

use axum::http::HeaderMap;

use super::codes::ApiError;
use bitget_proto::sign::{self as credential, Credentials};

/// Bitget rejects timestamps more than 30 s away from its clock.
pub const TIMESTAMP_TOLERANCE_MS: u64 = 30_000;

/// One signed request as received: the exact path, raw query and body bytes.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub body: &'a [u8],
}

/// The key that signed `request`, or Bitget's error for why it is refused.
pub fn authenticate<'k>(
    keys: &'k [Credentials],
    headers: &HeaderMap,
    request: SignedRequest<'_>,
    now_ms: u64,
) -> Result<&'k Credentials, ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let api_key = header("ACCESS-KEY").ok_or_else(|| ApiError::bad_request("40001", ""))?;
    let signature = header("ACCESS-SIGN").ok_or_else(|| ApiError::bad_request("40003", ""))?;
    let timestamp = header("ACCESS-TIMESTAMP").ok_or_else(|| ApiError::bad_request("40005", ""))?;
    let passphrase =
        header("ACCESS-PASSPHRASE").ok_or_else(|| ApiError::bad_request("40011", ""))?;
    let creds = keys
        .iter()
        .find(|c| c.api_key == api_key)
        .ok_or_else(|| ApiError::bad_request("40006", ""))?;
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| ApiError::bad_request("40005", ""))?;
    if ts.abs_diff(now_ms) > TIMESTAMP_TOLERANCE_MS {
        return Err(ApiError::bad_request("40008", ""));
    }
    if creds.passphrase != passphrase {
        return Err(ApiError::bad_request("40012", ""));
    }
    let valid = credential::verify(
        creds.secret.as_bytes(),
        timestamp,
        request.method,
        request.path,
        request.query,
        request.body,
        signature,
    );
    if !valid {
        return Err(ApiError::bad_request("40009", ""));
    }
    Ok(creds)
}
