//! Interest: which series clients want kept fresh, and when they last asked, so that
//! whoever fetches (the poller now, a feed later) follows one set ([`super::Store::want`](crate::store::Store::want)).

/// A series a client wants kept fresh.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted {
    /// Rows its client read, so the first fetch brings as many.
    pub(super) rows: u32,
    /// When it last asked (the caller's clock, ms).
    pub(super) asked_ms: u64,
}

/// What [`Store::want`](crate::store::Store::want) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Wanted from now on.
    New,
    /// Wanted already; its time was renewed.
    Again,
    /// Not taken: `cap` series are wanted already.
    Full,
}
