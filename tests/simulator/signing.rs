//! Signed requests: the published test vectors verify, and every signing mistake gets its code.

use bitget_poller::bitget::credential::{self, Credentials};
use bitget_sim::SimConfig;
use serde_json::Value;

use super::helpers::*;

fn vectors() -> (Credentials, u64, Vec<Value>) {
    let file = fixture("reference/signing_test_vectors.computed.json");
    let c = &file["credentials"];
    let creds = Credentials::new(
        c["apiKey"].as_str().unwrap(),
        c["secretKey"].as_str().unwrap(),
        c["passphrase"].as_str().unwrap(),
    );
    let ts = file["timestamp_ms"].as_str().unwrap().parse().unwrap();
    (creds, ts, file["vectors"].as_array().unwrap().clone())
}

#[test]
fn signer_matches_every_test_vector() {
    let (creds, ts, vectors) = vectors();
    assert_eq!(vectors.len(), 4);
    for v in vectors {
        let url = v["url"].as_str().unwrap();
        let path_and_query = url.trim_start_matches("https://api.bitget.com");
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let sign = creds.sign(
            &ts.to_string(),
            v["method"].as_str().unwrap(),
            path,
            query,
            v["body"].as_str().unwrap().as_bytes(),
        );
        assert_eq!(sign, v["expected_ACCESS_SIGN"].as_str().unwrap(), "{url}");
        assert_eq!(
            format!(
                "{ts}{}{path_and_query}{}",
                v["method"].as_str().unwrap(),
                v["body"].as_str().unwrap()
            ),
            v["prehash"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn simulator_accepts_the_vectors_headers_byte_for_byte() {
    let (creds, ts, vectors) = vectors();
    let (sim, clock) = start(SimConfig {
        keys: vec![creds],
        ..SimConfig::default()
    })
    .await;
    clock.set_ms(ts);
    let http = client();
    for v in vectors {
        let url = v["url"]
            .as_str()
            .unwrap()
            .replace("https://api.bitget.com", &sim.base_url());
        if url.contains("/spot/account/info") {
            continue; // not simulated; the signature itself is covered above
        }
        let mut request = match v["method"].as_str().unwrap() {
            "POST" => http.post(&url).body(v["body"].as_str().unwrap().to_owned()),
            _ => http.get(&url),
        };
        for (name, value) in v["headers_sent"].as_object().unwrap() {
            request = request.header(name, value.as_str().unwrap());
        }
        let reply = to_reply(request.send().await.unwrap()).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        assert_eq!(reply.code(), "00000");
    }
}

#[tokio::test]
async fn every_signing_mistake_gets_its_code() {
    let (creds, _, _) = vectors();
    let (sim, _clock) = start(SimConfig {
        keys: vec![creds.clone()],
        ..SimConfig::default()
    })
    .await;
    let creds_key = Signer::new(&sim, &creds);
    let http = client();
    let path = "/api/v2/mix/account/accounts";
    let query = "productType=USDT-FUTURES";
    let url = format!("{}{path}?{query}", sim.base_url());
    let ts = T0.to_string();
    let good_sign = creds.sign(&ts, "GET", path, query, b"");
    let headers = |skip: &str, overrides: &[(&'static str, String)]| {
        let mut all = vec![
            ("ACCESS-KEY", creds.api_key.clone()),
            ("ACCESS-SIGN", good_sign.clone()),
            ("ACCESS-TIMESTAMP", ts.clone()),
            ("ACCESS-PASSPHRASE", creds.passphrase.clone()),
        ];
        all.retain(|(name, _)| *name != skip);
        for (name, value) in overrides {
            all.retain(|(n, _)| n != name);
            all.push((name, value.clone()));
        }
        all
    };
    let wrong_secret = credential::sign(b"not-the-secret", &ts, "GET", path, query, b"");
    let skewed = (T0 - 30_001).to_string();
    let skewed_sign = creds.sign(&skewed, "GET", path, query, b"");
    let cases = [
        ("no key", headers("ACCESS-KEY", &[]), "40001"),
        ("no signature", headers("ACCESS-SIGN", &[]), "40003"),
        ("no timestamp", headers("ACCESS-TIMESTAMP", &[]), "40005"),
        ("no passphrase", headers("ACCESS-PASSPHRASE", &[]), "40011"),
        (
            "unknown key",
            headers("", &[("ACCESS-KEY", "someone-else".into())]),
            "40006",
        ),
        (
            "timestamp 30.001 s old",
            headers(
                "",
                &[("ACCESS-TIMESTAMP", skewed), ("ACCESS-SIGN", skewed_sign)],
            ),
            "40008",
        ),
        (
            "bad timestamp",
            headers("", &[("ACCESS-TIMESTAMP", "yesterday".into())]),
            "40005",
        ),
        (
            "wrong secret",
            headers("", &[("ACCESS-SIGN", wrong_secret)]),
            "40009",
        ),
        (
            "garbage signature",
            headers("", &[("ACCESS-SIGN", "%%%".into())]),
            "40009",
        ),
        (
            "wrong passphrase",
            headers("", &[("ACCESS-PASSPHRASE", "nope".into())]),
            "40012",
        ),
    ];
    for (what, headers, code) in cases {
        let mut request = http.get(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let reply = to_reply(request.send().await.unwrap()).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, code.to_owned()),
            "{what}: {}",
            reply.body
        );
        assert!(reply.json()["data"].is_null());
    }
    // Exactly at the 30 s edge is still accepted.
    let edge = (T0 - 30_000).to_string();
    let reply = to_reply(
        http.get(&url)
            .header("ACCESS-KEY", &creds.api_key)
            .header("ACCESS-SIGN", creds.sign(&edge, "GET", path, query, b""))
            .header("ACCESS-TIMESTAMP", edge)
            .header("ACCESS-PASSPHRASE", &creds.passphrase)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A signature over a different query does not verify.
    let tampered = creds_key.get(path, "productType=COIN-FUTURES").await;
    assert_eq!(
        tampered.status, 200,
        "signed as sent, so the signature matches"
    );
    let reply = to_reply(
        http.get(format!("{}{path}?productType=COIN-FUTURES", sim.base_url()))
            .header("ACCESS-KEY", &creds.api_key)
            .header("ACCESS-SIGN", good_sign.clone())
            .header("ACCESS-TIMESTAMP", ts.clone())
            .header("ACCESS-PASSPHRASE", &creds.passphrase)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.code(), "40009");
}

#[tokio::test]
async fn orders_place_fill_rest_cancel_and_refuse_a_repeated_client_oid() {
    let creds = Credentials::new("k", "s", "p");
    let (sim, _clock) = start(SimConfig {
        keys: vec![creds.clone()],
        ..SimConfig::default()
    })
    .await;
    let creds_key = Signer::new(&sim, &creds);
    let place = "/api/v2/mix/order/place-order";
    let market = r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.01","side":"buy","orderType":"market","clientOid":"m-1"}"#;
    let reply = creds_key.post(place, market).await;
    assert_eq!(reply.code(), "00000", "{}", reply.body);
    assert_eq!(reply.json()["data"]["clientOid"], "m-1");
    let again = creds_key.post(place, market).await;
    assert_eq!((again.status, again.code()), (400, "45034".to_owned()));

    let positions = creds_key
        .get(
            "/api/v2/mix/position/all-position",
            "productType=USDT-FUTURES",
        )
        .await;
    let positions = positions.json()["data"].clone();
    assert_eq!(positions.as_array().unwrap().len(), 1);
    assert_eq!(positions[0]["symbol"], "BTCUSDT");
    assert_eq!(positions[0]["holdSide"], "long");
    assert_eq!(positions[0]["total"], "0.01");

    let resting = r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"0.01","price":"1000","side":"buy","orderType":"limit","clientOid":"l-1"}"#;
    assert_eq!(creds_key.post(place, resting).await.code(), "00000");
    let detail = creds_key
        .get(
            "/api/v2/mix/order/detail",
            "clientOid=l-1&productType=USDT-FUTURES&symbol=BTCUSDT",
        )
        .await;
    assert_eq!(detail.json()["data"]["state"], "live");
    let cancel = r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","clientOid":"l-1"}"#;
    let reply = creds_key
        .post("/api/v2/mix/order/cancel-order", cancel)
        .await;
    assert_eq!(reply.json()["data"]["clientOid"], "l-1");
    let twice = creds_key
        .post("/api/v2/mix/order/cancel-order", cancel)
        .await;
    assert_eq!(twice.code(), "43001");
    let neither = creds_key
        .post(
            "/api/v2/mix/order/cancel-order",
            r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES"}"#,
        )
        .await;
    assert_eq!(neither.code(), "40924");
    let not_json = creds_key.post(place, "{oops").await;
    assert_eq!(not_json.code(), "400172");
    let huge = r#"{"symbol":"BTCUSDT","productType":"USDT-FUTURES","marginMode":"crossed","marginCoin":"USDT","size":"100000","side":"buy","orderType":"market"}"#;
    assert_eq!(creds_key.post(place, huge).await.code(), "40762");
}
