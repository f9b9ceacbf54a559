//! `run --live` end to end: credentials asked for only with --live, each problem named, and
//! the secret and passphrase in no log file and no output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bitget_poller::bitget::credential::Credentials;
use bitget_sim::SimConfig;

use super::helpers::{simulator, temp_dir};

const SECRET: &str = "sEcReT-9f8e7d6c5b4a";
const PASSPHRASE: &str = "pA55-phrase-x1y2";

fn write_config(dir: &Path, base_url: &str) -> PathBuf {
    let strategies = dir.join("strategies");
    std::fs::create_dir_all(&strategies).unwrap();
    std::fs::write(
        strategies.join("st.toml"),
        "kind = \"supertrend_pullback\"\nfilter = \"*USDT\"\ntimeframe = \"1m\"\nposition_usdt = \"100\"\n",
    )
    .unwrap();
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            "[exchange]\nbase_url = \"{base_url}\"\n[poll]\nsymbols = [\"BTCUSDT\", \"ETHUSDT\"]\ntickers_interval_secs = 1\n[logging]\ndir = '{}'\nlevel = \"trace\"\nusage_interval_secs = 1\n[trading]\nstrategies_dir = '{}'\nbalances_interval_secs = 1\npositions_interval_secs = 1\n[store]\npath = '{}'\n",
            dir.join("logs").display(),
            strategies.display(),
            dir.join("candles.sqlite").display()
        ),
    )
    .unwrap();
    path
}

async fn run_live(config: PathBuf, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bitget-poller"));
        command
            .args(["run", "--live", "--duration", "3", "--config"])
            .arg(&config)
            .env_remove("BITGET_API_KEY")
            .env_remove("BITGET_API_SECRET")
            .env_remove("BITGET_API_PASSPHRASE")
            .env("RUST_LOG", "trace");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

fn credentials_env(secret: &str, passphrase: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BITGET_API_KEY", "bp-test-key".to_owned()),
        ("BITGET_API_SECRET", secret.to_owned()),
        ("BITGET_API_PASSPHRASE", passphrase.to_owned()),
    ]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn all_logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        out.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_and_passphrase_appear_in_no_log_and_no_output() {
    let sim = simulator(SimConfig {
        keys: vec![Credentials::new("bp-test-key", SECRET, PASSPHRASE)],
        ..SimConfig::default()
    })
    .await;
    let dir = temp_dir("no-secrets");
    let config = write_config(&dir, &sim.base_url());
    let output = run_live(config, credentials_env(SECRET, PASSPHRASE)).await;
    let stats = sim.stats();
    sim.stop().await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let logs = all_logs(&dir);
    // Signed requests really were made, and logged at trace level everywhere.
    assert!(stats.endpoints["/api/v2/mix/account/accounts"].accepted >= 2);
    assert!(stats.endpoints["/api/v2/mix/position/all-position"].accepted >= 2);
    assert!(
        logs.contains("event=balance") && logs.contains("event=positions"),
        "no account reads logged"
    );
    assert!(stdout.contains("trading summary (live)"), "{stdout}");
    for secret in [SECRET, PASSPHRASE] {
        assert!(!stdout.contains(secret), "stdout leaks a credential");
        assert!(!stderr.contains(secret), "stderr leaks a credential");
        assert!(!logs.contains(secret), "a log file leaks a credential");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_is_named_with_exit_code_2() {
    let dir = temp_dir("missing-var");
    let config = write_config(&dir, "http://127.0.0.1:9");
    let mut env = credentials_env(SECRET, PASSPHRASE);
    env.remove(1);
    let output = run_live(config, env).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error: BITGET_API_SECRET is not set"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_stops_the_run_naming_it() {
    let sim = simulator(SimConfig {
        keys: vec![Credentials::new("bp-test-key", SECRET, PASSPHRASE)],
        ..SimConfig::default()
    })
    .await;
    let dir = temp_dir("wrong-pass");
    let config = write_config(&dir, &sim.base_url());
    let output = run_live(config, credentials_env(SECRET, "not-the-passphrase")).await;
    sim.stop().await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("BITGET_API_PASSPHRASE is wrong"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-passphrase"));
}
