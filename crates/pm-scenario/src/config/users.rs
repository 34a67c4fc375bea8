//! `[users]`: how many customers place the orders, and how skewed towards a few hot ones.

use serde::{Deserialize, Serialize};

use crate::error::Problems;

/// Most distinct users.
pub const MAX_USERS: u64 = 100_000_000;

/// The `[users]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Users {
    /// Distinct users (cardinality of `user_id`, the Kafka key).
    pub count: u64,
    /// How many of them are hot.
    pub hot_users: u64,
    /// Share of orders placed by the hot users (spread evenly among them); the other
    /// orders are spread evenly among the remaining users.
    pub hot_share: f64,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            count: 1_000,
            hot_users: 0,
            hot_share: 0.0,
        }
    }
}

impl Users {
    pub(crate) fn check(&self, p: &mut Problems) {
        p.within("users.count", self.count, 1, MAX_USERS);
        if self.hot_users > self.count {
            p.push(
                "users.hot_users",
                format!(
                    "must not exceed users.count ({} > {})",
                    self.hot_users, self.count
                ),
            );
        }
        p.share("users.hot_share", self.hot_share);
        if self.hot_share > 0.0 && self.hot_users == 0 {
            p.push(
                "users.hot_users",
                "must be at least 1 when users.hot_share is above 0",
            );
        }
        if self.hot_share < 1.0 && self.hot_users > 0 && self.hot_users >= self.count {
            p.push(
                "users.hot_users",
                "must be below users.count unless users.hot_share is 1 (the other orders need cold users)",
            );
        }
    }
}
