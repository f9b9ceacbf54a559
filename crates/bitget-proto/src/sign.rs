//! Bitget's request signature and the API key triple it is made with.
//!
//! Bitget's scheme is `base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath +
//! ("?" + query) + body))`, with the query string and body signed exactly as they are sent.
//! The client signs and the simulator verifies with this one code, so both sides agree by
//! construction and one set of published test vectors covers both.
//!
//! [`Credentials`] are redacted in `Debug` and wiped from memory on drop.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

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

impl Drop for Credentials {
    fn drop(&mut self) {
        self.api_key.zeroize();
        self.secret.zeroize();
        self.passphrase.zeroize();
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
