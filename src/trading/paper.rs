//! Paper trading: fills simulated at the first price seen after a signal, with the taker fee,
//! and positions, fees and PnL tracked per strategy instance and symbol.
//!
//! Pure bookkeeping, no I/O or clock: the engine decides which price is "next" and logs what
//! this returns.

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::core::market::Symbol;

/// One simulated fill and what it did to the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    /// Signed size traded: positive buys.
    pub quantity: Decimal,
    pub price: Decimal,
    /// Fee paid, positive.
    pub fee: Decimal,
    /// PnL realised by the part that reduced the position, before the fee.
    pub realized: Decimal,
    /// Signed position after the fill.
    pub position: Decimal,
    /// Average entry of the position after the fill (0 when flat).
    pub entry: Decimal,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Holding {
    size: Decimal,
    entry: Decimal,
}

/// Totals of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceTotals {
    pub fills: u64,
    pub fees: Decimal,
    pub realized: Decimal,
    pub unrealized: Decimal,
    pub open_positions: usize,
}

/// The paper account: cash, per-(instance, symbol) positions, last prices.
#[derive(Debug, Clone)]
pub struct PaperBook {
    starting: Decimal,
    fee_rate: Decimal,
    holdings: HashMap<(String, Symbol), Holding>,
    totals: HashMap<String, InstanceTotals>,
    marks: HashMap<Symbol, Decimal>,
}

impl PaperBook {
    /// An account with `starting` USDT, paying `fee_rate` of the notional on every fill.
    pub fn new(starting: Decimal, fee_rate: Decimal) -> Self {
        Self {
            starting,
            fee_rate,
            holdings: HashMap::new(),
            totals: HashMap::new(),
            marks: HashMap::new(),
        }
    }

    /// The signed position of `instance` in `symbol`.
    pub fn position(&self, instance: &str, symbol: &Symbol) -> Decimal {
        self.holdings
            .get(&(instance.to_owned(), symbol.clone()))
            .map_or(Decimal::ZERO, |h| h.size)
    }

    /// Trades `quantity` (positive buys) of `symbol` at `price` for `instance`.
    pub fn fill(
        &mut self,
        instance: &str,
        symbol: &Symbol,
        quantity: Decimal,
        price: Decimal,
    ) -> Fill {
        let key = (instance.to_owned(), symbol.clone());
        let held = self.holdings.get(&key).copied().unwrap_or_default();
        let fee = (quantity.abs() * price * self.fee_rate).round_dp(8);
        let after = held.size + quantity;
        let reducing =
            !held.size.is_zero() && held.size.is_sign_negative() != quantity.is_sign_negative();
        let reduced = if reducing {
            held.size.abs().min(quantity.abs())
        } else {
            Decimal::ZERO
        };
        let direction = if held.size.is_sign_negative() {
            -Decimal::ONE
        } else {
            Decimal::ONE
        };
        let realized = (reduced * (price - held.entry) * direction).round_dp(8);
        let entry = if after.is_zero() {
            Decimal::ZERO
        } else if held.size.is_zero() || after.is_sign_negative() != held.size.is_sign_negative() {
            // Opened, or flipped through zero: the remainder opened at this price.
            price
        } else if after.abs() > held.size.abs() {
            ((held.size.abs() * held.entry + quantity.abs() * price) / after.abs()).round_dp(8)
        } else {
            held.entry
        };
        if after.is_zero() {
            self.holdings.remove(&key);
        } else {
            self.holdings.insert(key, Holding { size: after, entry });
        }
        self.marks.insert(symbol.clone(), price);
        let totals = self.totals.entry(instance.to_owned()).or_default();
        totals.fills += 1;
        totals.fees += fee;
        totals.realized += realized;
        Fill {
            quantity,
            price,
            fee,
            realized,
            position: after,
            entry,
        }
    }

    /// Records the latest price of `symbol`, for unrealised PnL.
    pub fn mark(&mut self, symbol: &Symbol, price: Decimal) {
        self.marks.insert(symbol.clone(), price);
    }

    /// Totals per instance, unrealised PnL at the latest marks; sorted by instance name.
    pub fn totals(&self) -> Vec<(String, InstanceTotals)> {
        let mut out: Vec<(String, InstanceTotals)> = self
            .totals
            .iter()
            .map(|(name, t)| (name.clone(), *t))
            .collect();
        for (name, totals) in &mut out {
            for ((instance, symbol), h) in &self.holdings {
                if instance == name {
                    totals.open_positions += 1;
                    let mark = self.marks.get(symbol).copied().unwrap_or(h.entry);
                    totals.unrealized += (h.size * (mark - h.entry)).round_dp(8);
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Starting cash plus realised PnL minus fees plus unrealised PnL.
    pub fn equity(&self) -> Decimal {
        self.starting
            + self
                .totals()
                .iter()
                .map(|(_, t)| t.realized - t.fees + t.unrealized)
                .sum::<Decimal>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_round_trip_realises_pnl_minus_both_fees() {
        let btc = Symbol::from_exchange("BTCUSDT");
        let mut book = PaperBook::new(d("10000"), d("0.0006"));
        let open = book.fill("st", &btc, d("0.01"), d("60000"));
        assert_eq!(open.fee, d("0.36"));
        assert_eq!(
            (open.position, open.entry, open.realized),
            (d("0.01"), d("60000"), d("0"))
        );
        book.mark(&btc, d("61000"));
        let t = book.totals()[0].1;
        assert_eq!((t.unrealized, t.open_positions), (d("10"), 1));
        let close = book.fill("st", &btc, d("-0.01"), d("60500"));
        assert_eq!(close.realized, d("5"));
        assert_eq!(close.fee, d("0.363"));
        assert_eq!(close.position, d("0"));
        assert_eq!(book.equity(), d("10000") + d("5") - d("0.36") - d("0.363"));
        assert_eq!(book.totals()[0].1.fills, 2);
    }

    #[test]
    fn a_short_profits_when_price_falls_and_adds_average_in() {
        let eth = Symbol::from_exchange("ETHUSDT");
        let mut book = PaperBook::new(d("1000"), d("0"));
        book.fill("a", &eth, d("-1"), d("3000"));
        let add = book.fill("a", &eth, d("-1"), d("3100"));
        assert_eq!((add.position, add.entry), (d("-2"), d("3050")));
        let cover = book.fill("a", &eth, d("2"), d("2950"));
        assert_eq!(cover.realized, d("200"));
        assert_eq!(book.position("a", &eth), d("0"));
        // Instances are separate books.
        assert_eq!(book.position("b", &eth), d("0"));
    }

    #[test]
    fn a_flip_realises_the_old_side_and_opens_the_rest_at_the_fill() {
        let btc = Symbol::from_exchange("BTCUSDT");
        let mut book = PaperBook::new(d("1000"), d("0"));
        book.fill("a", &btc, d("1"), d("100"));
        let flip = book.fill("a", &btc, d("-3"), d("110"));
        assert_eq!(
            (flip.realized, flip.position, flip.entry),
            (d("10"), d("-2"), d("110"))
        );
    }
}
