//! Checking operator input: every problem is collected, each on one line naming its key
//! and the allowed range, so the operator fixes a file (or a settings change) in one pass.
//! Each configuration section's owner checks its own keys with this; `config` composes
//! them, and the same checks can validate a change at run time.

use std::time::Duration;

/// Collects every problem rather than stopping at the first.
#[derive(Debug, Default)]
pub struct Checker {
    problems: Vec<String>,
}

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem, already worded: the key, what is wrong, what is allowed.
    pub fn problem(&mut self, text: impl Into<String>) {
        self.problems.push(text.into());
    }

    /// The problems found, in the order found.
    pub fn into_problems(self) -> Vec<String> {
        self.problems
    }

    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// `value`, noting a problem when it is outside `min..=max`.
    pub fn range<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        key: &str,
        value: T,
        min: T,
        max: T,
    ) -> T {
        if !(min <= value && value <= max) {
            self.problems.push(format!(
                "{key} = {value} is out of range; allowed {min} to {max}"
            ));
        }
        value
    }

    /// Seconds in `min..=max`.
    pub fn secs(&mut self, key: &str, value: f64, min: f64, max: f64) -> Duration {
        self.secs_or_off(key, value, min, max, false)
    }

    /// Seconds in `min..=max`, or 0 as well when `zero_is_off`.
    pub fn secs_or_off(
        &mut self,
        key: &str,
        value: f64,
        min: f64,
        max: f64,
        zero_is_off: bool,
    ) -> Duration {
        if !value.is_finite() || !(min..=max).contains(&value) {
            self.problems.push(format!(
                "{key} = {} is out of range; allowed {}{min} to {max} seconds",
                shown(value),
                if zero_is_off { "0 (off), or " } else { "" }
            ));
            return Duration::ZERO;
        }
        Duration::from_secs_f64(value)
    }
}

/// A number as an operator wrote it, short: `1e308`, not its 309 digits.
pub fn shown(value: f64) -> String {
    if value.is_finite() && value.abs() >= 1e9 {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_kept_with_its_key_and_range() {
        let mut c = Checker::new();
        assert_eq!(c.range("a.n", 5, 1, 10), 5);
        assert!(c.is_clean());
        c.range("a.n", 0, 1, 10);
        assert_eq!(c.secs("a.s", 2.5, 1.0, 3.0), Duration::from_millis(2500));
        c.secs_or_off("a.t", 1e308, 0.1, 60.0, true);
        c.problem("a.x is wrong");
        assert_eq!(
            c.into_problems(),
            [
                "a.n = 0 is out of range; allowed 1 to 10",
                "a.t = 1e308 is out of range; allowed 0 (off), or 0.1 to 60 seconds",
                "a.x is wrong",
            ]
        );
    }
}
