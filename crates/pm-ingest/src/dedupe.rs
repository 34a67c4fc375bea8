//! A bounded memory of webhooks recently handed to Kafka.
//!
//! Providers redeliver aggressively (timeouts on their side, retries after our 503), and
//! every redelivery that reaches Kafka costs a produce, a consume and a database round
//! trip only to be recognised as a duplicate there. This set answers the common case at
//! the edge. It is a **best-effort shortcut**, not the guarantee: it is per process, lost
//! on restart, forgets the oldest entries beyond its capacity, and two concurrent first
//! deliveries may both be produced. The consumer's dedupe table in PostgreSQL is what
//! makes processing exactly-once; this only saves work.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use pm_domain::webhook::WebhookKind;
use pm_domain::ProviderEventId;

/// How many deliveries are remembered by default.
pub const DEFAULT_CAPACITY: usize = 100_000;

type Key = (WebhookKind, Arc<str>);

/// Remembers the last `capacity` accepted `(kind, provider_event_id)` pairs, evicting the
/// oldest first.
pub struct RecentlyAccepted {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    seen: HashSet<Key>,
    order: VecDeque<Key>,
}

impl std::fmt::Debug for RecentlyAccepted {
    /// Sizes only: the entries could be a hundred thousand ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentlyAccepted")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl RecentlyAccepted {
    /// A set holding at most `capacity` entries (`0` disables the shortcut).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn key(kind: WebhookKind, id: &ProviderEventId) -> Key {
        (kind, Arc::from(id.as_str()))
    }

    /// Whether this delivery was accepted recently.
    pub fn contains(&self, kind: WebhookKind, id: &ProviderEventId) -> bool {
        // A panic while holding the lock cannot leave the set inconsistent in a way that
        // matters (at worst an entry is missing), so a poisoned lock is used as it is.
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.seen.contains(&Self::key(kind, id))
    }

    /// Records a delivery; call only after it was durably stored.
    pub fn insert(&self, kind: WebhookKind, id: &ProviderEventId) {
        if self.capacity == 0 {
            return;
        }
        let key = Self::key(kind, id);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.seen.insert(key.clone()) {
            return;
        }
        inner.order.push_back(key);
        while inner.order.len() > self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.seen.remove(&oldest);
            }
        }
    }

    /// How many deliveries are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .order
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for RecentlyAccepted {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ProviderEventId {
        ProviderEventId::parse(s).expect("id")
    }

    #[test]
    fn remembers_by_kind_and_id_and_evicts_the_oldest() {
        let set = RecentlyAccepted::new(2);
        set.insert(WebhookKind::Order, &id("a"));
        assert!(set.contains(WebhookKind::Order, &id("a")));
        assert!(!set.contains(WebhookKind::Chargeback, &id("a")));
        set.insert(WebhookKind::Order, &id("a"));
        set.insert(WebhookKind::Order, &id("b"));
        assert_eq!(set.len(), 2);
        set.insert(WebhookKind::Chargeback, &id("a"));
        assert_eq!(set.len(), 2);
        assert!(
            !set.contains(WebhookKind::Order, &id("a")),
            "oldest evicted"
        );
        assert!(set.contains(WebhookKind::Order, &id("b")));
        assert!(set.contains(WebhookKind::Chargeback, &id("a")));
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let set = RecentlyAccepted::new(0);
        set.insert(WebhookKind::Order, &id("a"));
        assert!(set.is_empty());
        assert!(!set.contains(WebhookKind::Order, &id("a")));
    }
}
