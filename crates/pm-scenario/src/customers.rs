//! Customers: `users.count` stable user ids, a few of them hot.
//!
//! User `i` is always the same UUID for a seed (drawn by random access from its own
//! stream), so the id set does not depend on how many orders were generated.

use pm_domain::UserId;
use uuid::Builder;

use crate::config::Users;
use crate::dice::{Dice, Stream};

/// Picks the customer of each order.
#[derive(Debug, Clone)]
pub(crate) struct Customers {
    ids: Dice,
    count: u64,
    hot: u64,
    hot_share: f64,
}

impl Customers {
    pub(crate) fn new(seed: u64, users: &Users) -> Self {
        Customers {
            ids: Dice::new(seed, Stream::UserIds),
            count: users.count.max(1),
            hot: users.hot_users.min(users.count),
            hot_share: users.hot_share,
        }
    }

    /// The index of the next order's customer: hot users (`0 .. hot_users`) with
    /// probability `hot_share`, otherwise one of the others.
    pub(crate) fn pick_index(&self, dice: &mut Dice) -> u64 {
        if self.hot > 0 && dice.chance(self.hot_share) {
            dice.below(self.hot)
        } else if self.hot < self.count {
            self.hot + dice.below(self.count - self.hot)
        } else {
            dice.below(self.count)
        }
    }

    /// The UUID (version 4 layout) of user `index`.
    pub(crate) fn id(&mut self, index: u64) -> UserId {
        UserId::from_uuid(Builder::from_random_bytes(self.ids.bytes_at(index)).into_uuid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_distinct_uuids() {
        let users = Users {
            count: 100,
            hot_users: 2,
            hot_share: 0.5,
        };
        let mut a = Customers::new(9, &users);
        let mut b = Customers::new(9, &users);
        assert_eq!(a.id(5), b.id(5));
        assert_ne!(a.id(5), a.id(6));
        assert_eq!(a.id(0).as_uuid().get_version_num(), 4);
    }

    #[test]
    fn hot_users_get_their_share() {
        let users = Users {
            count: 1_000,
            hot_users: 10,
            hot_share: 0.6,
        };
        let c = Customers::new(1, &users);
        let mut dice = Dice::new(1, Stream::Stories);
        let hot = (0..20_000).filter(|_| c.pick_index(&mut dice) < 10).count();
        assert!((11_500..12_500).contains(&hot), "{hot}");
    }
}
