//! Stories: the true history of each order, as the provider lives it, before any delivery
//! fault. An order is `created`, `updated` some times, then (usually) `success` or
//! `failed`; some successful orders are disputed later (see [`dispute`]).
//!
//! Every webhook gets a *tick*: order `k` starts at tick `k`, and each next webhook of
//! the same story comes `1 ..= orders.spread` ticks later, so stories interleave. The
//! provider's timestamps follow the ticks (one tick is one second of provider time, plus a
//! random sub-second part), so they strictly increase within a story.

use chrono::{DateTime, TimeDelta, Utc};
use pm_domain::dispute::ChargebackStatus;
use pm_domain::order::OrderStatus;
use pm_domain::{Currency, OrderId, ProviderEventId, UserId};
use rust_decimal::Decimal;

use crate::body::{map_text, time_text, JsonFields};
use crate::customers::Customers;
use crate::dice::{Dice, Stream};
use crate::ids::Ids;
use crate::plan::Route;
use crate::scenario::Scenario;

pub(crate) mod dispute;

pub(crate) use dispute::DisputeStory;

/// The true history of one order.
#[derive(Debug, Clone)]
pub(crate) struct Story {
    pub(crate) index: u64,
    pub(crate) order_id: OrderId,
    pub(crate) user_id: UserId,
    pub(crate) currency: Currency,
    /// With exactly the currency's minor units as its scale.
    pub(crate) amount: Decimal,
    pub(crate) created_at: DateTime<Utc>,
    /// Real webhooks in generation order: the order's, then its chargeback's.
    pub(crate) events: Vec<Event>,
    pub(crate) dispute: Option<DisputeStory>,
}

/// One real webhook of a story.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) tick: u64,
    pub(crate) event_id: ProviderEventId,
    pub(crate) route: Route,
    pub(crate) fields: JsonFields,
    pub(crate) fact: Fact,
    /// An earlier event of the story that must be delivered first.
    pub(crate) depends_on: Option<usize>,
    /// The provider decides only after the merchant's actions on this dispute.
    pub(crate) waits_for_actions: bool,
}

/// What a webhook says, for the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fact {
    Order {
        status: OrderStatus,
        updated_at: DateTime<Utc>,
    },
    Chargeback {
        status: ChargebackStatus,
        occurred_at: DateTime<Utc>,
        evidence_due_at: DateTime<Utc>,
    },
}

impl Story {
    /// The order events (they come first).
    pub(crate) fn order_events(
        &self,
    ) -> impl Iterator<Item = (&Event, OrderStatus, DateTime<Utc>)> {
        self.events.iter().filter_map(|e| match e.fact {
            Fact::Order { status, updated_at } => Some((e, status, updated_at)),
            Fact::Chargeback { .. } => None,
        })
    }

    /// The status and `updated_at` of the lifecycle's last webhook.
    pub(crate) fn last_order_state(&self) -> (OrderStatus, DateTime<Utc>) {
        self.order_events()
            .last()
            .map_or((OrderStatus::Created, self.created_at), |(_, s, t)| (s, t))
    }

    /// The amount as JSON/decimal text with the currency's minor units (`100.50`).
    pub(crate) fn amount_text(&self) -> String {
        self.amount.to_string()
    }
}

/// The channels written into order `meta`.
const CHANNELS: [&str; 3] = ["web", "app", "pos"];

/// Generates stories one order at a time, from the `Stories` stream.
#[derive(Debug)]
pub(crate) struct StoryMaker<'a> {
    scenario: &'a Scenario,
    dice: Dice,
    customers: Customers,
    ids: Ids,
}

impl<'a> StoryMaker<'a> {
    pub(crate) fn new(scenario: &'a Scenario) -> Self {
        let config = scenario.config();
        StoryMaker {
            scenario,
            dice: Dice::new(config.seed, Stream::Stories),
            customers: Customers::new(config.seed, &config.users),
            ids: Ids::new(scenario.id_prefix().to_owned()),
        }
    }

    pub(crate) fn ids(&self) -> &Ids {
        &self.ids
    }

    /// The provider time of a tick, with a random millisecond part.
    fn time_at(&mut self, tick: u64) -> DateTime<Utc> {
        let ms = tick.saturating_mul(1000) + self.dice.below(1000);
        self.scenario.start_time()
            + TimeDelta::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 2))
    }

    /// The next tick of a story: `1 ..= spread` after `tick`.
    fn after(&mut self, tick: u64, min: u64, max: u64) -> u64 {
        tick + self.dice.between(min.max(1), max.max(1))
    }

    /// The story of order `k`.
    pub(crate) fn story(&mut self, k: u64) -> Story {
        let lifecycle = self.scenario.config().orders.clone();
        let spread = u64::from(lifecycle.spread);
        let user = self.customers.pick_index(&mut self.dice);
        let user_id = self.customers.id(user);
        let choices = self.scenario.currencies();
        let weights: Vec<u64> = choices.iter().map(|c| c.weight).collect();
        let choice = choices[self
            .dice
            .weighted(&weights)
            .min(choices.len().saturating_sub(1))];
        let minor = i64::try_from(self.dice.between(
            u64::try_from(choice.min_minor).unwrap_or(1),
            u64::try_from(choice.max_minor).unwrap_or(1),
        ))
        .unwrap_or(1);
        let amount = Decimal::new(minor, choice.currency.minor_units());
        let channel = *self.dice.pick(&CHANNELS).unwrap_or(&"web");

        let mut tick = k;
        let created_at = self.time_at(tick);
        let mut story = Story {
            index: k,
            order_id: self.ids.order(k),
            user_id,
            currency: choice.currency,
            amount,
            created_at,
            events: Vec::new(),
            dispute: None,
        };
        self.push_order_event(&mut story, tick, OrderStatus::Created, created_at, channel);
        let updates = self.dice.between(
            u64::from(lifecycle.updates_min),
            u64::from(lifecycle.updates_max),
        );
        for _ in 0..updates {
            tick = self.after(tick, 1, spread);
            let at = self.time_at(tick);
            self.push_order_event(&mut story, tick, OrderStatus::Updated, at, channel);
        }
        let r = self.dice.unit();
        let end = if r < lifecycle.success_share {
            Some(OrderStatus::Success)
        } else if r < lifecycle.success_share + lifecycle.failed_share {
            Some(OrderStatus::Failed)
        } else {
            None
        };
        if let Some(status) = end {
            tick = self.after(tick, 1, spread);
            let at = self.time_at(tick);
            self.push_order_event(&mut story, tick, status, at, channel);
        }
        if end == Some(OrderStatus::Success)
            && self.dice.chance(self.scenario.config().disputes.share)
        {
            dispute::add(self, &mut story, tick);
        }
        story
    }

    fn push_order_event(
        &mut self,
        story: &mut Story,
        tick: u64,
        status: OrderStatus,
        updated_at: DateTime<Utc>,
        channel: &str,
    ) {
        let j = story.events.len();
        let event_id = self.ids.event(story.index, j);
        let fields = JsonFields::new()
            .str("provider_event_id", event_id.as_str())
            .str("order_id", story.order_id.as_str())
            .str("user_id", &story.user_id.to_string())
            .str("status", status.as_str())
            .raw("created_at", time_text(&story.created_at))
            .raw("updated_at", time_text(&updated_at))
            .raw("meta", map_text(&[("channel", channel)]));
        story.events.push(Event {
            tick,
            event_id,
            route: Route::Orders,
            fields,
            fact: Fact::Order { status, updated_at },
            depends_on: None,
            waits_for_actions: false,
        });
    }
}
