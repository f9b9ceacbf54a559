//! Bitget's error replies, as the simulator sends them.
//!
//! Every message is Bitget's own text from its REST error-code list (with `{0}` filled in), so
//! clients that match on `msg` (ccxt does) behave as they would against the real exchange. A
//! test checks each code and template against the published list in tests/fixtures/bitget.

use axum::http::StatusCode;

/// One Bitget error reply: HTTP status, body `code`, body `msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the reply (400 for business errors, 429 when rate-limited).
    pub status: StatusCode,
    /// The body's `code`, a string as Bitget sends it.
    pub code: &'static str,
    /// The body's `msg`.
    pub msg: String,
}

/// Codes the simulator replies with and Bitget's message template for each.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("429", "Too many requests"),
    ("40001", "ACCESS_KEY cannot be empty"),
    ("40002", "ACCESS_SIGN cannot be empty"),
    ("40003", "Signature cannot be empty"),
    ("40005", "Invalid ACCESS_TIMESTAMP"),
    ("40006", "Invalid ACCESS_KEY"),
    ("40008", "Request timestamp expired"),
    ("40009", "sign signature error"),
    ("40011", "ACCESS_PASSPHRASE cannot be empty"),
    ("40012", "apikey/password is incorrect"),
    ("40015", "System is abnormal, please try again later"),
    ("40019", "Parameter {0} cannot be empty"),
    ("40020", "Parameter {0} error"),
    ("40034", "Parameter {0} does not exist"),
    ("40309", "The contract has been removed"),
    ("40404", "Request URL NOT FOUND"),
    ("40725", "service return an error"),
    ("40762", "The order size is greater than the max open size"),
    ("40924", "orderId and clientOid must have one"),
    ("43001", "The order does not exist"),
    ("45001", "Unknown error"),
    ("45034", "clientOid duplicate"),
    ("400172", "Parameter verification failed"),
];

impl ApiError {
    /// A 400 reply with `code` and its template, `{0}` replaced by `arg`.
    pub fn bad_request(code: &'static str, arg: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            msg: message(code, arg),
        }
    }

    /// `40019`: a required parameter is missing.
    pub fn missing(param: &str) -> Self {
        Self::bad_request("40019", param)
    }

    /// `40020`: a parameter has a value the endpoint does not accept.
    pub fn invalid(param: &str) -> Self {
        Self::bad_request("40020", param)
    }

    /// `40034`: the symbol (or another looked-up value) does not exist.
    pub fn unknown(param: &str) -> Self {
        Self::bad_request("40034", param)
    }

    /// The rate-limit reply; Bitget's live body spells the message in title case.
    pub fn rate_limited(status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            msg: "Too Many Requests".to_owned(),
        }
    }
}

/// Bitget's message for `code` with `{0}` replaced by `arg`.
pub fn message(code: &str, arg: &str) -> String {
    TEMPLATES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, template)| template.replace("{0}", arg))
        .unwrap_or_else(|| format!("error {code}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled() {
        assert_eq!(
            ApiError::missing("symbol").msg,
            "Parameter symbol cannot be empty"
        );
        assert_eq!(
            ApiError::invalid("granularity").msg,
            "Parameter granularity error"
        );
        assert_eq!(ApiError::unknown("symbol").code, "40034");
        assert_eq!(ApiError::unknown("symbol").status, StatusCode::BAD_REQUEST);
    }
}
