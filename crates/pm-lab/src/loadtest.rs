//! The load generator of Payment Manager (`pmctl loadtest`): drives reproducible webhook
//! traffic at fixed arrival rates and reports latency, throughput, end-to-end lag and
//! correctness.
//!
//! * [`traffic`]: signed, realistic webhook lifecycles from a scenario file (the same engine
//!   as the provider simulator), re-timed onto the step's schedule, with fresh ids per run
//!   and step;
//! * [`schedule`] and [`engine`]: an **open-model** generator — request `i` is due at
//!   `i / rate`, latency is measured from that intended time, so queueing in a slow server
//!   cannot hide (no coordinated omission) — with microsecond HDR histograms ([`latency`]);
//! * [`sweep`] and [`knee`]: one step per offered rate and the highest rate that meets the
//!   latency objective;
//! * [`expect`], [`check`] and [`lag`]: what the database must hold after what was
//!   actually accepted, the comparison through the API's read routes (nothing lost,
//!   nothing doubled), and the lag from acceptance to visibility;
//! * [`report`]: the JSON result file (command line, revision, machine, full histograms),
//!   a terminal table, a Markdown report with an SVG chart, comparison with an earlier
//!   result and with the machine's baseline rates.
//!
//! It talks to the system only over HTTP — webhooks to ingest or the API, reads from the
//! API — never to its database or broker, so it measures what a provider and an operator
//! would see.

#![warn(missing_docs)]

pub mod check;
pub mod engine;
pub mod expect;
pub mod knee;
pub mod lag;
pub mod latency;
pub mod progress;
pub mod report;
pub mod schedule;
pub mod sweep;
pub mod traffic;
