//! The client's signer produces Bitget's test-vector headers byte for byte.

use bitget_poller::bitget::credential::{Credentials, Signer};
use serde_json::Value;

#[test]
fn the_signer_reproduces_every_test_vector() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/bitget/reference/signing_test_vectors.computed.json"
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = &file["credentials"];
    let ts: u64 = file["timestamp_ms"].as_str().unwrap().parse().unwrap();
    let signer = Signer::new(Credentials::new(
        c["apiKey"].as_str().unwrap(),
        c["secretKey"].as_str().unwrap(),
        c["passphrase"].as_str().unwrap(),
    ));
    let vectors = file["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 4);
    for v in vectors {
        let url = v["url"].as_str().unwrap();
        let rest = url.strip_prefix("https://api.bitget.com").unwrap();
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let method = v["method"].as_str().unwrap();
        let headers = signer.headers(
            method,
            path,
            query,
            v["body"].as_str().unwrap().as_bytes(),
            ts,
        );
        let sent = &v["headers_sent"];
        assert_eq!(headers.sign, sent["ACCESS-SIGN"].as_str().unwrap(), "{url}");
        assert_eq!(
            headers.timestamp,
            sent["ACCESS-TIMESTAMP"].as_str().unwrap()
        );
        assert_eq!(headers.key, sent["ACCESS-KEY"].as_str().unwrap());
        assert_eq!(
            headers.passphrase,
            sent["ACCESS-PASSPHRASE"].as_str().unwrap()
        );
        assert!(!format!("{headers:?}").contains(headers.passphrase));
    }
}
