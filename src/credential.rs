//! Bitget API credentials and the HMAC request signature.
//!
//! The same signing code is used by the client (to sign) and by the simulator (to verify), so
//! both sides agree by construction and one set of test vectors covers both. Bitget's scheme is
//! `base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath + ("?" + query) + body))`, with
//! the query string and body signed exactly as they are sent.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// An API key triple. `Debug` never prints the secret or the passphrase.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The public key id, sent as `ACCESS-KEY`.
    pub api_key: String,
    /// The HMAC secret; never sent.
    pub secret: String,
    /// Chosen when the key was created; sent in clear as `ACCESS-PASSPHRASE`.
    pub passphrase: String,
}

impl Credentials {
    /// Builds a credential triple.
    pub fn new(
        api_key: impl Into<String>,
        secret: impl Into<String>,
        passphrase: impl Into<String>,
    ) -> Self {
        Self {
            api_key: api_key.into(),
            secret: secret.into(),
            passphrase: passphrase.into(),
        }
    }

    /// Signs one request; see [`sign`].
    pub fn sign(
        &self,
        timestamp_ms: &str,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> String {
        sign(
            self.secret.as_bytes(),
            timestamp_ms,
            method,
            path,
            query,
            body,
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.api_key)
            .field("secret", &"<redacted>")
            .field("passphrase", &"<redacted>")
            .finish()
    }
}

/// The `ACCESS-SIGN` value for a request.
///
/// `query` is the raw query string without the `?` (empty when there is none) and `body` the
/// exact bytes sent (empty for GET).
pub fn sign(
    secret: &[u8],
    timestamp_ms: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> String {
    BASE64.encode(
        prehash_mac(secret, timestamp_ms, method, path, query, body)
            .finalize()
            .into_bytes(),
    )
}

/// Checks a received signature in constant time.
pub fn verify(
    secret: &[u8],
    timestamp_ms: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    signature_b64: &str,
) -> bool {
    let Ok(received) = BASE64.decode(signature_b64.trim()) else {
        return false;
    };
    prehash_mac(secret, timestamp_ms, method, path, query, body)
        .verify_slice(&received)
        .is_ok()
}

/// The MAC over Bitget's prehash, fed piece by piece so no prehash string is allocated.
fn prehash_mac(
    secret: &[u8],
    timestamp_ms: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("hmac takes keys of any length");
    mac.update(timestamp_ms.as_bytes());
    mac.update(method.to_ascii_uppercase().as_bytes());
    mac.update(path.as_bytes());
    if !query.is_empty() {
        mac.update(b"?");
        mac.update(query.as_bytes());
    }
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_and_passphrase() {
        let creds = Credentials::new("key-1", "very-secret", "pass-phrase");
        let shown = format!("{creds:?}");
        assert!(shown.contains("key-1"));
        assert!(!shown.contains("very-secret"));
        assert!(!shown.contains("pass-phrase"));
    }

    #[test]
    fn verify_rejects_a_tampered_query() {
        let sig = sign(b"s", "1", "GET", "/p", "a=1", b"");
        assert!(verify(b"s", "1", "GET", "/p", "a=1", b"", &sig));
        assert!(!verify(b"s", "1", "GET", "/p", "a=2", b"", &sig));
        assert!(!verify(b"s", "1", "GET", "/p", "a=1", b"", "not base64!"));
    }
}
