//! One FIFO gate per endpoint: requests to one endpoint are admitted in arrival order and
//! only the head of its queue holds a timer, while endpoints wait independently of each
//! other (Bitget meters each on its own) and meet only in the overall budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Category, Route};

/// One endpoint's queue.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// The gates, created on first use. Endpoint ids come from the adapter's table (plus one
/// for anything else), so the map is bounded by it.
#[derive(Debug, Default)]
pub struct Gates {
    gates: Mutex<HashMap<(Category, u16), Gate>>,
}

impl Gates {
    /// Waits for `route`'s endpoint's turn; the turn lasts as long as the guard.
    pub async fn enter(&self, route: &Route) -> tokio::sync::OwnedMutexGuard<()> {
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(gates.entry((route.category, route.endpoint)).or_default())
        };
        gate.lock_owned().await
    }
}
