//! Everything trading needs before the first candle: strategy files, credentials, the clock
//! offset and the contract sizes.

use std::sync::Arc;

use thiserror::Error;

use super::{Engine, Execution, TradingConfig};
use crate::bitget::client::{Client, RequestError};
use crate::bitget::credential::{CredentialError, Credentials, Signer};
use crate::bitget::discovery;
use crate::bitget::http::CallError;
use crate::core::clock::Clock;
use crate::core::market::Instrument;
use crate::core::timeframe::Market;
use crate::scheduler::config::PollConfig;
use crate::strategy::{load_dir, spec::Polled, StrategyError, StrategySpec};
use crate::trading::paper::PaperBook;

/// Why trading could not start.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Strategies(#[from] StrategyError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("live trading supports USDT-M futures only; set exchange.market = \"futures\" or run without --live")]
    SpotLive,
    #[error("cannot measure the clock offset to bitget: {0}")]
    Clock(CallError),
    #[error("cannot read the open positions at start: {0}")]
    Positions(CallError),
}

impl SetupError {
    /// Exit code: 2 for what the operator must fix before starting, 1 for the exchange.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Clock(_) | Self::Positions(_) => 1,
            _ => 2,
        }
    }
}

/// How orders are to be executed.
#[derive(Debug)]
pub enum Venue {
    Paper,
    /// Live orders signed with these credentials.
    Live(Credentials),
}

/// Reads and checks the strategy files for `config`.
///
/// # Errors
/// The folder cannot be read or a file has problems.
pub fn load_strategies(
    trading: &TradingConfig,
    poll: &PollConfig,
) -> Result<Vec<StrategySpec>, StrategyError> {
    load_dir(&trading.strategies_dir, polled(poll))
}

/// What strategy files must agree with in the poller's configuration.
fn polled(poll: &PollConfig) -> Polled<'_> {
    Polled {
        market: poll.market,
        timeframes: &poll.timeframes,
        symbols: &poll.symbols,
    }
}

/// The instance in `strategies/supertrend_pullback.toml` as built, for `demo` outside the
/// repository.
pub fn builtin_strategies(poll: &PollConfig) -> Vec<StrategySpec> {
    let text = include_str!("../../strategies/supertrend_pullback.toml");
    crate::strategy::spec::parse(
        text,
        std::path::Path::new("(built-in supertrend_pullback.toml)"),
        polled(poll),
    )
    .ok()
    .flatten()
    .into_iter()
    .collect()
}

/// Builds the engine for `specs`; for live trading, with the client signed and the clock
/// offset measured. Returns the engine and, when live, the signed client.
///
/// # Errors
/// See [`SetupError`].
pub async fn prepare(
    trading: &TradingConfig,
    poll: &PollConfig,
    specs: Vec<StrategySpec>,
    client: &Client,
    venue: Venue,
    wall: Arc<dyn Clock>,
) -> Result<(Engine, Option<Client>), SetupError> {
    if specs.is_empty() {
        tracing::warn!(
            dir = %trading.strategies_dir.display(),
            "no enabled strategy files; candles are polled but nothing trades"
        );
    }
    let TradingConfig {
        starting_usdt,
        fee_rate,
        ..
    } = *trading;
    let mut held = Vec::new();
    let (execution, signed) = match venue {
        Venue::Paper => (
            Execution::Paper(PaperBook::new(starting_usdt, fee_rate)),
            None,
        ),
        Venue::Live(credentials) => {
            if poll.market != Market::Futures {
                return Err(SetupError::SpotLive);
            }
            let signer = Arc::new(Signer::new(credentials));
            let signed = client.clone().with_signer(signer);
            signed.sync_clock().await.map_err(SetupError::Clock)?;
            // Also proves the credentials before the first candle.
            match signed.positions().await {
                Ok(positions) => held = positions,
                Err(RequestError::Call(e)) => return Err(SetupError::Positions(e)),
                Err(e) => tracing::warn!("{e}; no positions taken over at start"),
            }
            (Execution::Live(signed.clone()), Some(signed))
        }
    };
    let instruments = instruments(client, poll.market).await;
    let mut engine = Engine::new(specs, poll.market, instruments, execution, wall);
    engine.adopt(&held);
    Ok((engine, signed))
}

/// Contract sizes (volume place, minimum size); empty, with a warning, when unavailable.
async fn instruments(client: &Client, market: Market) -> Vec<Instrument> {
    discovery::instruments(client, market)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("{e}; sizing orders to 4 decimals");
            Vec::new()
        })
}
