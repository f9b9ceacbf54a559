//! What each client of the gateway asked and how it was served, by its `X-Client-Name` or
//! its address: the gateway counts, the rate log and `/metrics` read.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// How one request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Counted on arrival, whatever follows.
    Request,
    /// From the store or memory.
    Hit,
    /// From Bitget, this client's request being the one sent.
    Miss,
    /// From Bitget, sharing another client's identical request in flight.
    Merged,
    /// Passed on unchanged (signed, orders, anything not cached).
    Forwarded,
    /// Waited for the budget before it was sent.
    Queued,
    /// Answered by the gateway itself: 429 past the deadline, a wrong token, a body too big.
    Refused,
}

/// One client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounters {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub merged: u64,
    pub forwarded: u64,
    pub queued: u64,
    pub refused: u64,
}

impl ClientCounters {
    /// The counters' names, as the rate log writes them, in [`Self::fields`] order.
    pub const NAMES: [&'static str; 7] = [
        "requests",
        "hits",
        "misses",
        "merged",
        "forwarded",
        "queued",
        "refused",
    ];

    pub fn fields(&self) -> [u64; 7] {
        [
            self.requests,
            self.hits,
            self.misses,
            self.merged,
            self.forwarded,
            self.queued,
            self.refused,
        ]
    }

    /// What was counted since `before`, field by field.
    pub fn since(&self, before: &Self) -> Self {
        let mut f = self.fields();
        for (n, b) in f.iter_mut().zip(before.fields()) {
            *n = n.saturating_sub(b);
        }
        Self::from_fields(f)
    }

    pub fn from_fields(f: [u64; 7]) -> Self {
        Self {
            requests: f[0],
            hits: f[1],
            misses: f[2],
            merged: f[3],
            forwarded: f[4],
            queued: f[5],
            refused: f[6],
        }
    }
}

/// Clients kept at most; past this, new names are counted under `other`, so a client
/// inventing names cannot grow memory without bound.
const MAX_CLIENTS: usize = 256;

/// Every client's counters.
#[derive(Debug, Default)]
pub struct ClientStats {
    clients: Mutex<BTreeMap<String, ClientCounters>>,
}

impl ClientStats {
    pub fn count(&self, client: &str, served: Served) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let name = if clients.contains_key(client) || clients.len() < MAX_CLIENTS {
            client
        } else {
            "other"
        };
        // The name is copied only the first time it is seen.
        if !clients.contains_key(name) {
            clients.insert(name.to_owned(), ClientCounters::default());
        }
        let Some(c) = clients.get_mut(name) else {
            return;
        };
        let counter = match served {
            Served::Request => &mut c.requests,
            Served::Hit => &mut c.hits,
            Served::Miss => &mut c.misses,
            Served::Merged => &mut c.merged,
            Served::Forwarded => &mut c.forwarded,
            Served::Queued => &mut c.queued,
            Served::Refused => &mut c.refused,
        };
        *counter += 1;
    }

    /// Every client's counters, by name.
    pub fn snapshot(&self) -> Vec<(String, ClientCounters)> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_kept_per_client_and_bounded_in_number() {
        let stats = ClientStats::default();
        stats.count("bot-a", Served::Request);
        stats.count("bot-a", Served::Hit);
        stats.count("127.0.0.1", Served::Refused);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot[0].0, "127.0.0.1");
        assert_eq!(snapshot[0].1.refused, 1);
        assert_eq!((snapshot[1].1.requests, snapshot[1].1.hits), (1, 1));
        for i in 0..300 {
            stats.count(&format!("c{i}"), Served::Request);
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.len(), MAX_CLIENTS + 1);
        let other = snapshot.iter().find(|(n, _)| n == "other").unwrap();
        assert_eq!(other.1.requests, 300 - (MAX_CLIENTS as u64 - 2));
    }
}
