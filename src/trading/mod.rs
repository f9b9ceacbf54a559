//! Execution: candles and tickers in, strategy intents out, turned into paper fills or live
//! orders, with every signal, order, fill and rejection written to the trading log.
//!
//! The engine is the poller's consumer. It owns the strategy instances and, per instance and
//! symbol, the position they hold. One order per instance and symbol is in flight at a time;
//! an intent arriving meanwhile waits for it, so two orders can never race for one position.
//! Paper orders fill at the first price observed after the deciding candle closed (the next
//! candle's open, a forming candle or a ticker, whichever comes first). Live orders run as
//! tasks in a `JoinSet` owned by the engine, so candles keep flowing while an order is being
//! placed or reconciled, and none outlives the engine.

pub mod config;
pub mod live;
pub mod paper;
pub mod setup;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::{Decimal, RoundingStrategy};
use tokio::task::JoinSet;

use crate::bitget::client::Client;
use crate::bitget::error::BitgetError;
use crate::core::clock::Clock;
use crate::core::events::MarketEvent;
use crate::core::market::{Candle, Instrument, Symbol};
use crate::core::timeframe::Market;
use crate::store::Subscription;
use crate::strategy::{Intent, Strategy, StrategySpec, Target};
use live::{place_order, OrderOutcome, OrderRequest};
use paper::{InstanceTotals, PaperBook};

pub use crate::core::TRADING_LOG;

/// Decimal places used for sizes when the contract's `volumePlace` is unknown.
const DEFAULT_VOLUME_PLACE: u32 = 4;

/// Settings of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradingConfig {
    pub enabled: bool,
    pub strategies_dir: std::path::PathBuf,
    /// Paper account's starting cash.
    pub starting_usdt: Decimal,
    /// Paper taker fee, as a fraction of the notional.
    pub fee_rate: Decimal,
    /// Live: how often balances and positions are read.
    pub balances_every: Duration,
    pub positions_every: Duration,
}

impl Default for TradingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            strategies_dir: "strategies".into(),
            starting_usdt: Decimal::from(10_000),
            fee_rate: Decimal::new(6, 4),
            balances_every: Duration::from_secs(10),
            positions_every: Duration::from_secs(5),
        }
    }
}

/// Where orders go.
#[derive(Debug)]
pub enum Execution {
    Paper(PaperBook),
    /// Signed orders through this client (and its limiter).
    Live(Client),
}

/// What the engine did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradingSummary {
    pub live: bool,
    pub signals: u64,
    pub orders: u64,
    pub fills: u64,
    pub rejected: u64,
    pub unknown: u64,
    /// Paper only: totals per instance, and the account's equity.
    pub instances: Vec<(String, InstanceTotals)>,
    pub equity: Option<Decimal>,
}

impl TradingSummary {
    /// The lines printed at exit.
    pub fn render(&self) -> String {
        let mut out = format!(
            "trading summary ({}): {} signals, {} orders, {} fills, {} rejected, {} unknown",
            if self.live { "live" } else { "paper" },
            self.signals,
            self.orders,
            self.fills,
            self.rejected,
            self.unknown
        );
        for (name, t) in &self.instances {
            out.push_str(&format!(
                "\n  {name}: {} fills, realised {} USDT, fees {} USDT, unrealised {} USDT, {} open positions",
                t.fills,
                t.realized.round_dp(4),
                t.fees.round_dp(4),
                t.unrealized.round_dp(4),
                t.open_positions
            ));
        }
        if let Some(equity) = self.equity {
            out.push_str(&format!("\n  paper equity {} USDT", equity.round_dp(4)));
        }
        out
    }
}

struct Instance {
    spec: StrategySpec,
    strategy: Box<dyn Strategy>,
}

#[derive(Debug, Default)]
struct Holding {
    /// Signed size in the base coin.
    position: Decimal,
    /// An order for this instance and symbol is in flight.
    busy: bool,
    /// The latest intent that arrived while busy.
    queued: Option<Intent>,
}

#[derive(Debug)]
struct PendingFill {
    instance: usize,
    symbol: Symbol,
    quantity: Decimal,
    /// Fills at the first price observed at or after this time (the deciding candle's close).
    after_ms: u64,
}

type OrderDone = (usize, OrderRequest, Result<OrderOutcome, BitgetError>);

/// Feeds strategies and executes their intents.
pub struct Engine {
    instances: Vec<Instance>,
    instruments: HashMap<Symbol, Instrument>,
    execution: Execution,
    holdings: HashMap<(usize, Symbol), Holding>,
    pending: Vec<PendingFill>,
    orders: JoinSet<OrderDone>,
    order_seq: u64,
    /// This run's start in base 36, so client ids never repeat across restarts.
    session: String,
    summary: TradingSummary,
    wall: Arc<dyn Clock>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("instances", &self.instances.len())
            .field("pending", &self.pending.len())
            .field("orders_in_flight", &self.orders.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine running `specs` on `market`, sizing orders with `instruments`. `wall` tells
    /// history (the candles fetched at start, which warm strategies up) from the present.
    pub fn new(
        specs: Vec<StrategySpec>,
        market: Market,
        instruments: Vec<Instrument>,
        execution: Execution,
        wall: Arc<dyn Clock>,
    ) -> Self {
        let instances = specs
            .into_iter()
            .filter(|spec| spec.timeframe.market() == market)
            .map(|spec| Instance {
                strategy: spec.build(),
                spec,
            })
            .collect();
        let live = matches!(execution, Execution::Live(_));
        Self {
            instances,
            instruments: instruments
                .into_iter()
                .map(|i| (i.symbol.clone(), i))
                .collect(),
            execution,
            holdings: HashMap::new(),
            pending: Vec::new(),
            orders: JoinSet::new(),
            order_seq: 0,
            session: base36(wall.now_ms()),
            summary: TradingSummary {
                live,
                ..TradingSummary::default()
            },
            wall,
        }
    }

    /// Consumes events until the poller closes the channel, then waits for orders in
    /// flight and returns what happened.
    ///
    /// # Errors
    /// Bitget refused the credentials on an order; orders already in flight are awaited.
    pub async fn run(mut self, mut events: Subscription) -> Result<TradingSummary, BitgetError> {
        let mut fatal = None;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(&event),
                    None => break,
                },
                Some(done) = self.orders.join_next(), if !self.orders.is_empty() => {
                    if let Err(e) = self.order_done(done) {
                        fatal = Some(e);
                        break;
                    }
                }
            }
        }
        while let Some(done) = self.orders.join_next().await {
            if let Err(e) = self.order_done(done) {
                fatal.get_or_insert(e);
            }
        }
        for p in &self.pending {
            tracing::warn!(target: TRADING_LOG, event = %"unfilled", instance = %self.instances[p.instance].spec.name, symbol = %p.symbol, quantity = %p.quantity, "no price arrived after the signal before shutdown; paper order not filled");
        }
        if let Some(e) = fatal {
            return Err(e);
        }
        Ok(self.finish())
    }

    /// Feeds one event; paper fills happen here. Public so tests drive the engine directly.
    pub fn on_event(&mut self, event: &MarketEvent) {
        match event {
            MarketEvent::CandleClosed(c) => {
                self.observe(&c.symbol, c.open_time, c.open);
                self.observe(&c.symbol, close_time(c).saturating_sub(1), c.close);
                for i in 0..self.instances.len() {
                    let inst = &mut self.instances[i];
                    if inst.spec.timeframe != c.timeframe || !inst.spec.symbols.matches(&c.symbol) {
                        continue;
                    }
                    let intents = inst.strategy.on_candle(c);
                    for intent in intents {
                        self.on_intent(i, intent);
                    }
                }
            }
            MarketEvent::CandleForming(c) => self.observe(&c.symbol, c.open_time, c.close),
            MarketEvent::Tickers { tickers, .. } => {
                for t in tickers.iter() {
                    self.observe(&t.symbol, t.ts, t.last);
                    for i in 0..self.instances.len() {
                        if !self.instances[i].spec.symbols.matches(&t.symbol) {
                            continue;
                        }
                        let intents = self.instances[i].strategy.on_ticker(t);
                        for intent in intents {
                            self.on_intent(i, intent);
                        }
                    }
                }
            }
        }
    }

    /// The paper book, when paper trading.
    pub fn paper_book(&self) -> Option<&PaperBook> {
        match &self.execution {
            Execution::Paper(book) => Some(book),
            Execution::Live(_) => None,
        }
    }

    /// Summary so far (paper totals marked at the latest prices).
    pub fn finish(&self) -> TradingSummary {
        let mut summary = self.summary.clone();
        if let Some(book) = self.paper_book() {
            summary.instances = book.totals();
            summary.equity = Some(book.equity());
        }
        summary
    }

    /// Takes over positions found on the exchange at start, so a restarted bot does not open
    /// them again: a position in a symbol exactly one instance trades becomes that
    /// instance's; others are left alone, with a warning.
    pub fn adopt(&mut self, positions: &[crate::core::market::Position]) {
        for p in positions {
            let owners: Vec<usize> = (0..self.instances.len())
                .filter(|&i| self.instances[i].spec.symbols.matches(&p.symbol))
                .collect();
            let signed = if p.side == "short" { -p.size } else { p.size };
            match owners.as_slice() {
                [i] => {
                    let name = &self.instances[*i].spec.name;
                    tracing::info!(target: TRADING_LOG, event = %"adopted", instance = %name, symbol = %p.symbol, position = %signed, entry = %p.entry_price, "exchange position taken over by this instance");
                    self.holdings
                        .entry((*i, p.symbol.clone()))
                        .or_default()
                        .position = signed;
                }
                [] => {
                    tracing::warn!(target: TRADING_LOG, event = %"not_adopted", symbol = %p.symbol, position = %signed, "exchange position in a symbol no strategy trades; left alone");
                }
                _ => {
                    tracing::warn!(target: TRADING_LOG, event = %"not_adopted", symbol = %p.symbol, position = %signed, instances = owners.len(), "exchange position in a symbol several strategies trade; none takes it over");
                }
            }
        }
    }

    /// The index of the instance named `name`.
    pub fn instance(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.spec.name == name)
    }

    /// Handles an intent of instance `i` as if its strategy had just returned it. The engine
    /// feeds its strategies itself; this is for tests and tools that drive it directly.
    pub fn submit(&mut self, i: usize, intent: Intent) {
        if i < self.instances.len() {
            self.on_intent(i, intent);
        }
    }

    fn on_intent(&mut self, i: usize, intent: Intent) {
        let name = self.instances[i].spec.name.clone();
        let timeframe = self.instances[i].spec.timeframe;
        let closed_at = timeframe.next_open(intent.candle_open_time);
        let period = closed_at
            .saturating_sub(intent.candle_open_time)
            .max(60_000);
        if closed_at.saturating_add(period) < self.wall.now_ms() {
            // A signal from the history fetched at start: it warms the strategy up, but its
            // moment has passed, so it is not traded.
            tracing::debug!(target: TRADING_LOG, event = %"warmup_signal", instance = %name, symbol = %intent.symbol, target = %intent.target, candle = intent.candle_open_time, "signal on history; not traded");
            return;
        }
        self.summary.signals += 1;
        tracing::info!(target: TRADING_LOG, event = %"signal", instance = %name, symbol = %intent.symbol, target = %intent.target, reason = intent.reason, price = %intent.decided_at_price, candle = intent.candle_open_time, "strategy signal");
        let holding = self.holdings.entry((i, intent.symbol.clone())).or_default();
        if holding.busy {
            holding.queued = Some(intent);
            return;
        }
        self.act(i, intent);
    }

    /// Sends the order that moves instance `i`'s position to the intent's target.
    fn act(&mut self, i: usize, intent: Intent) {
        let spec = &self.instances[i].spec;
        let name = spec.name.clone();
        let key = (i, intent.symbol.clone());
        let current = self
            .holdings
            .get(&key)
            .map_or(Decimal::ZERO, |h| h.position);
        let desired = match intent.target {
            Target::Flat => Decimal::ZERO,
            target => {
                match self.size_for(&intent.symbol, intent.decided_at_price, spec.position_usdt) {
                    Ok(size) => target.sign() * size,
                    Err(reason) => {
                        self.summary.rejected += 1;
                        tracing::warn!(target: TRADING_LOG, event = %"rejected", instance = %name, symbol = %intent.symbol, "{reason}; the strategy goes on");
                        return;
                    }
                }
            }
        };
        let quantity = desired - current;
        if quantity.is_zero() {
            // Typically an exit for a position the strategy entered during warm-up history,
            // which was never traded.
            tracing::info!(target: TRADING_LOG, event = %"no_order", instance = %name, symbol = %intent.symbol, target = %intent.target, "already at the target position; nothing to send");
            return;
        }
        self.summary.orders += 1;
        let after_ms = self.instances[i]
            .spec
            .timeframe
            .next_open(intent.candle_open_time);
        let holding = self.holdings.entry(key).or_default();
        holding.busy = true;
        match &self.execution {
            Execution::Paper(_) => {
                tracing::info!(target: TRADING_LOG, event = %"order", mode = %"paper", instance = %name, symbol = %intent.symbol, quantity = %quantity, reason = intent.reason, "paper order; fills at the next price");
                self.pending.push(PendingFill {
                    instance: i,
                    symbol: intent.symbol,
                    quantity,
                    after_ms,
                });
            }
            Execution::Live(client) => {
                self.order_seq += 1;
                let order = OrderRequest {
                    client_oid: client_oid(&name, &intent.symbol, &self.session, self.order_seq),
                    symbol: intent.symbol,
                    quantity,
                    reduce_only: desired.is_zero(),
                };
                tracing::info!(target: TRADING_LOG, event = %"order", mode = %"live", instance = %name, symbol = %order.symbol, side = order.side(), size = %quantity.abs(), reduce_only = order.reduce_only, client_oid = %order.client_oid, reason = intent.reason, "placing market order");
                let client = client.clone();
                self.orders.spawn(async move {
                    let outcome = place_order(&client, &order).await;
                    (i, order, outcome)
                });
            }
        }
    }

    /// Base-coin size worth `notional` USDT at `price`, rounded down to the contract's step.
    fn size_for(
        &self,
        symbol: &Symbol,
        price: Decimal,
        notional: Decimal,
    ) -> Result<Decimal, String> {
        if price <= Decimal::ZERO {
            return Err(format!("no usable price for {symbol}"));
        }
        let instrument = self.instruments.get(symbol);
        let places = instrument
            .and_then(|i| i.volume_place)
            .unwrap_or(DEFAULT_VOLUME_PLACE);
        let size = (notional / price).round_dp_with_strategy(places, RoundingStrategy::ToZero);
        let min = instrument.and_then(|i| i.min_size).unwrap_or(Decimal::ZERO);
        if size.is_zero() || size < min {
            return Err(format!(
                "position_usdt {notional} buys {size} {symbol} at {price}, below the minimum size {min}; raise position_usdt"
            ));
        }
        Ok(size)
    }

    /// A price for `symbol` observed at `at_ms`: marks the paper book and fills paper orders
    /// decided before it.
    fn observe(&mut self, symbol: &Symbol, at_ms: u64, price: Decimal) {
        let Execution::Paper(book) = &mut self.execution else {
            return;
        };
        book.mark(symbol, price);
        if !self.pending.iter().any(|p| p.symbol == *symbol) {
            return;
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.symbol == *symbol && at_ms >= p.after_ms);
        self.pending = waiting;
        for p in ready {
            let name = self.instances[p.instance].spec.name.clone();
            let Execution::Paper(book) = &mut self.execution else {
                return;
            };
            let fill = book.fill(&name, symbol, p.quantity, price);
            self.summary.fills += 1;
            tracing::info!(target: TRADING_LOG, event = %"fill", mode = %"paper", instance = %name, symbol = %symbol, quantity = %fill.quantity, price = %fill.price, fee = %fill.fee, realized_pnl = %fill.realized, position = %fill.position, entry = %fill.entry, "paper fill");
            self.settle(p.instance, symbol, fill.position);
        }
    }

    /// The order of instance `i` on `symbol` is done: record the position, run a queued intent.
    fn settle(&mut self, i: usize, symbol: &Symbol, position: Decimal) {
        let holding = self.holdings.entry((i, symbol.clone())).or_default();
        holding.position = position;
        holding.busy = false;
        if let Some(next) = holding.queued.take() {
            self.act(i, next);
        }
    }

    fn order_done(
        &mut self,
        done: Result<OrderDone, tokio::task::JoinError>,
    ) -> Result<(), BitgetError> {
        let (i, order, outcome) = match done {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(target: TRADING_LOG, event = %"order_task_failed", "order task ended abnormally: {e}");
                return Ok(());
            }
        };
        let name = self.instances[i].spec.name.clone();
        let key = (i, order.symbol.clone());
        let current = self
            .holdings
            .get(&key)
            .map_or(Decimal::ZERO, |h| h.position);
        let position = match outcome? {
            OrderOutcome::Placed(detail) => {
                self.summary.fills += 1;
                let signed = if detail.side == "sell" {
                    -detail.filled
                } else {
                    detail.filled
                };
                tracing::info!(target: TRADING_LOG, event = %"fill", mode = %"live", instance = %name, symbol = %order.symbol, client_oid = %order.client_oid, order_id = %detail.order_id, state = %detail.state, quantity = %signed, price = %detail.price_avg.unwrap_or_default(), fee = %detail.fee, "order on the exchange");
                current + signed
            }
            OrderOutcome::Acknowledged(ack) => {
                self.summary.fills += 1;
                tracing::warn!(target: TRADING_LOG, event = %"fill", mode = %"live", instance = %name, symbol = %order.symbol, client_oid = %order.client_oid, order_id = %ack.order_id, "order accepted but its fill could not be read; assuming it filled in full");
                current + order.quantity
            }
            OrderOutcome::Rejected { code, message } => {
                self.summary.rejected += 1;
                tracing::warn!(target: TRADING_LOG, event = %"rejected", instance = %name, symbol = %order.symbol, client_oid = %order.client_oid, code = %code, "{message}; the strategy goes on");
                current
            }
            OrderOutcome::NotSent => current,
            OrderOutcome::Unknown { message } => {
                self.summary.unknown += 1;
                tracing::error!(target: TRADING_LOG, event = %"unknown_outcome", instance = %name, symbol = %order.symbol, client_oid = %order.client_oid, "{message}; check the position on the exchange");
                current
            }
        };
        self.settle(i, &order.symbol, position);
        Ok(())
    }
}

/// When `candle` closes: its timeframe knows.
fn close_time(candle: &Candle) -> u64 {
    candle.timeframe.next_open(candle.open_time)
}

/// `bp-<instance>-<symbol>-<session>-<seq>`: unique per order of this run and across runs,
/// so a lookup by it finds only this order. Bitget allows `[0-9a-zA-Z-+_#]`, under 50 chars.
fn client_oid(instance: &str, symbol: &Symbol, session: &str, seq: u64) -> String {
    let clean: String = instance
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect();
    let symbol: String = symbol.as_str().chars().take(14).collect();
    format!("bp-{clean}-{symbol}-{session}-{}", seq % 1_000_000)
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_oids_fit_bitgets_rules() {
        let session = base36(1_795_316_100_000);
        assert_eq!(session, "mwr8uoio");
        let oid = client_oid(
            "supertrend_majors_with_a_very_long_name",
            &Symbol::from_exchange("1000000BABYDOGEUSDT"),
            &session,
            123_456,
        );
        assert_eq!(oid, "bp-supertrend-1000000BABYDOG-mwr8uoio-123456");
        assert!(oid.len() < 50);
        assert!(oid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-+_#".contains(c)));
    }
}
