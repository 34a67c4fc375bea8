//! The fake payment provider, one process with two faces:
//!
//! - [`provider`]: the provider API the merchant calls (capture, dispute representments),
//!   with configurable latency and failure rates, idempotent on `Idempotency-Key`, keeping
//!   what it accepted so a run can be checked;
//! - the webhook emitter, which plays a scenario against ingest or the API like a real
//!   provider (signed, retried on 5xx and timeouts) and writes the ledger of what it sent.
//!
//! It talks to the system only over HTTP and depends on no database.

pub mod emitter;
pub mod provider;
