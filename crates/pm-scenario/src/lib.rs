//! The scenario engine of Payment Manager: a pure, deterministic function from a scenario
//! file to provider traffic and the final state that traffic must produce.
//!
//! A scenario (TOML, see `scenarios/README.md`) describes orders and their lifecycles,
//! chargebacks and their outcomes, the merchant's evidence, customers and hot keys,
//! currencies and amounts, the arrival rate, and how badly the provider delivers
//! (duplicates, reordering, late, malformed, badly signed, stale, invalid). The engine
//! turns it into a [`Plan`]:
//!
//! * [`Plan::deliveries`]: HTTP requests in send order, each with its send time
//!   ([`Delivery::at_ms`]), route, exact body bytes, how to sign it ([`Signing`]), what it
//!   is ([`DeliveryKind`]) and the response it must eventually get ([`Expect`]);
//! * [`Plan::actions`]: merchant API calls (store evidence, submit it) to make once a
//!   given delivery was accepted;
//! * [`Plan::ledger`]: the [`Ledger`], what the database must hold at the end — each
//!   order's and dispute's final state and stored event ids, the event ids that must
//!   never be stored, and totals. It round-trips through JSON for `pmctl verify`.
//!
//! The same file and seed give the same plan, byte for byte: randomness comes only from
//! ChaCha8 streams seeded with the scenario's seed, collections are ordered, and nothing
//! reads a clock. That is also why the engine does not sign: signatures carry the
//! current time, so [`Delivery::signature_header`] signs at send time.
//!
//! # Contract for emitters
//!
//! ```text
//! let scenario = Scenario::from_toml(&std::fs::read_to_string(path)?)?;
//! let plan = scenario.generate();
//! write(ledger_path, plan.ledger.to_json());
//! for (i, d) in plan.deliveries.iter().enumerate() {
//!     wait until start + d.at_ms;                       // the arrival process
//!     if let Some(a) = d.wait_for_action { wait until action a is done }
//!     if let Some(p) = d.depends_on { wait until delivery p was acknowledged }  // concurrent senders
//!     POST d.route.path(), Content-Type: application/json, body d.body,
//!          Webhook-Signature: d.signature_header(secret, now_unix) (omit when None)
//!     retry while Expect::is_retryable(status) (503, 5xx, 429, and 404 for a chargeback
//!          whose order is not stored yet); then check d.expect.matches(status)
//!     for (_, action) in plan.actions_after(i) { perform it (may run in the background) }
//! }
//! ```
//!
//! Actions name the order; the emitter finds the dispute with `GET /disputes?order_id=`.
//! A dispute's decision waits for the actions on it ([`Delivery::wait_for_action`]), so a
//! sequential emitter never stalls long: the decision is generated well after `opened`.
//! Timestamps inside bodies come from the scenario's `start_time`, not from the clock.
//!
//! This crate performs no I/O beyond parsing the TOML text it is given: no tokio, no
//! HTTP, no database. It depends only on `pm-domain` (whose parsers and state machines
//! the tests use to prove every body and the ledger right) and small pure libraries.

#![warn(missing_docs)]

mod arrival;
mod body;
pub mod config;
mod customers;
mod dice;
mod disorder;
mod error;
mod fault;
mod generate;
mod ids;
mod layout;
pub mod ledger;
pub mod plan;
mod scenario;
mod story;

pub use arrival::Arrival;
pub use config::ScenarioConfig;
pub use error::{FieldProblem, ScenarioError};
pub use ledger::{Counts, DisputeExpectation, Ledger, LedgerError, OrderExpectation};
pub use plan::{
    Action, ActionKind, Delivery, DeliveryKind, Displacement, Expect, FaultReason, Plan, Route,
    Signing,
};
pub use scenario::Scenario;
