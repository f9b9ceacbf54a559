//! Bitget API credentials as the poller reads and uses them: from the environment only
//! ([`from_env`]), and a [`Signer`] that stamps each request with the server's time as the
//! process's one [`crate::core::clock::ServerClock`] knows it (Bitget refuses timestamps
//! more than 30 s from its clock; the HTTP layer reads the clock).
//!
//! The signature itself and the key triple ([`Credentials`], redacted in `Debug`, wiped on
//! drop) are the `bitget-proto` crate's: the simulator verifies with the same code, so both
//! sides agree by construction and one set of test vectors covers both.

use std::fmt;

use thiserror::Error;
use zeroize::Zeroize;

pub use bitget_proto::sign::{sign, verify, Credentials};

/// Environment variable holding the API key id.
pub const API_KEY_VAR: &str = "BITGET_API_KEY";
/// Environment variable holding the HMAC secret.
pub const API_SECRET_VAR: &str = "BITGET_API_SECRET";
/// Environment variable holding the passphrase chosen when the key was created.
pub const API_PASSPHRASE_VAR: &str = "BITGET_API_PASSPHRASE";

/// Why credentials could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredentialError {
    #[error("{var} is not set; export it before starting (credentials are read only from the environment, never from config files)")]
    Missing { var: &'static str },
    #[error("{var} is set but empty; export the value Bitget showed when the key was created")]
    Empty { var: &'static str },
    #[error("{var} is not valid unicode; set it to the value exactly as Bitget showed it")]
    NotUnicode { var: &'static str },
}

/// Reads `BITGET_API_KEY`, `BITGET_API_SECRET` and `BITGET_API_PASSPHRASE`.
///
/// # Errors
/// The first variable that is unset, empty or not unicode.
pub fn from_env() -> Result<Credentials, CredentialError> {
    from_lookup(|var| std::env::var_os(var))
}

/// Like [`from_env`] with `lookup` standing in for the environment.
///
/// # Errors
/// The first variable that is missing, empty or not unicode.
pub fn from_lookup(
    mut lookup: impl FnMut(&str) -> Option<std::ffi::OsString>,
) -> Result<Credentials, CredentialError> {
    let mut read = |var: &'static str| -> Result<String, CredentialError> {
        let value = lookup(var).ok_or(CredentialError::Missing { var })?;
        let mut value = value
            .into_string()
            .map_err(|_| CredentialError::NotUnicode { var })?;
        let trimmed = value.trim().to_owned();
        value.zeroize();
        if trimmed.is_empty() {
            return Err(CredentialError::Empty { var });
        }
        Ok(trimmed)
    };
    Ok(Credentials {
        api_key: read(API_KEY_VAR)?,
        secret: read(API_SECRET_VAR)?,
        passphrase: read(API_PASSPHRASE_VAR)?,
    })
}

/// The `ACCESS-*` header values of one signed request.
pub struct SignedHeaders<'a> {
    pub key: &'a str,
    pub sign: String,
    pub timestamp: String,
    pub passphrase: &'a str,
}

impl fmt::Debug for SignedHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("key", &self.key)
            .field("sign", &"<redacted>")
            .field("timestamp", &self.timestamp)
            .field("passphrase", &"<redacted>")
            .finish()
    }
}

/// Signs requests with one key. The time it stamps is given: the caller reads it from the
/// process's one server clock, so the signature and the limiter agree on Bitget's time.
#[derive(Debug)]
pub struct Signer {
    credentials: Credentials,
}

impl Signer {
    /// A signer for `credentials`.
    pub fn new(credentials: Credentials) -> Self {
        Self { credentials }
    }

    pub fn api_key(&self) -> &str {
        &self.credentials.api_key
    }

    /// Headers for one request stamped `timestamp_ms` (Bitget's clock, Unix ms); `query`
    /// and `body` exactly as they will be sent.
    pub fn headers(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        timestamp_ms: u64,
    ) -> SignedHeaders<'_> {
        let timestamp = timestamp_ms.to_string();
        let sign = self.credentials.sign(&timestamp, method, path, query, body);
        SignedHeaders {
            key: &self.credentials.api_key,
            sign,
            timestamp,
            passphrase: &self.credentials.passphrase,
        }
    }
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

    fn env<'a>(
        pairs: &'a [(&'a str, &'a str)],
    ) -> impl FnMut(&str) -> Option<std::ffi::OsString> + 'a {
        move |var| {
            pairs
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| (*v).into())
        }
    }

    #[test]
    fn credentials_come_from_the_three_variables() {
        let creds = from_lookup(env(&[
            (API_KEY_VAR, "k"),
            (API_SECRET_VAR, " s\n"),
            (API_PASSPHRASE_VAR, "p"),
        ]))
        .unwrap();
        assert_eq!(creds, Credentials::new("k", "s", "p"));
    }

    #[test]
    fn a_missing_or_empty_variable_is_named() {
        let missing = from_lookup(env(&[(API_KEY_VAR, "k"), (API_PASSPHRASE_VAR, "p")]));
        assert_eq!(
            missing,
            Err(CredentialError::Missing {
                var: API_SECRET_VAR
            })
        );
        let empty = from_lookup(env(&[
            (API_KEY_VAR, "k"),
            (API_SECRET_VAR, "s"),
            (API_PASSPHRASE_VAR, "  "),
        ]));
        let error = empty.unwrap_err();
        assert_eq!(
            error,
            CredentialError::Empty {
                var: API_PASSPHRASE_VAR
            }
        );
        assert!(error
            .to_string()
            .starts_with("BITGET_API_PASSPHRASE is set but empty"));
    }

    #[test]
    fn the_signer_stamps_with_the_server_clock_it_is_given() {
        let signer = Signer::new(Credentials::new(
            "bg_test_key",
            "test-secret-123",
            "test-pass",
        ));
        // The server read 1_700_000_045_000 while our clock went from 50 ms before to 50 ms
        // after 1_700_000_000_000.
        let clock = crate::core::clock::ServerClock::default();
        clock.observe_round_trip(1_700_000_045_000, 1_699_999_999_950, 1_700_000_000_050);
        assert_eq!(clock.offset_ms(), Some(45_000));
        let headers = signer.headers(
            "GET",
            "/api/v2/mix/account/accounts",
            "productType=USDT-FUTURES",
            b"",
            clock.server_ms(1_700_000_000_000),
        );
        assert_eq!(headers.timestamp, "1700000045000");
        assert_eq!(
            headers.sign,
            sign(
                b"test-secret-123",
                "1700000045000",
                "GET",
                "/api/v2/mix/account/accounts",
                "productType=USDT-FUTURES",
                b""
            )
        );
    }

    #[test]
    fn verify_rejects_a_tampered_query() {
        let sig = sign(b"s", "1", "GET", "/p", "a=1", b"");
        assert!(verify(b"s", "1", "GET", "/p", "a=1", b"", &sig));
        assert!(!verify(b"s", "1", "GET", "/p", "a=2", b"", &sig));
        assert!(!verify(b"s", "1", "GET", "/p", "a=1", b"", "not base64!"));
    }
}
