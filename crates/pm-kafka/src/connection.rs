//! What librdkafka says only to a client's error callback.
//!
//! A broker that refuses this client's login or TLS handshake is retried by librdkafka
//! like a broker that is down: a metadata request then waits out its whole timeout and
//! ends as "broker transport failure", and the reason — a wrong password, an untrusted
//! certificate — reaches only the client's error callback, if anything serves it. An
//! operator who mistyped a password would be told to check that the broker is reachable.
//! So our clients carry a [`Watched`] context that keeps the last connection error, and
//! [`metadata`] stops waiting as soon as that error is a refusal, and reports it
//! ([`Error::Authentication`], [`Error::Tls`]).
//!
//! The callback runs on whichever thread polls the client, so [`metadata`] takes a
//! producer: its own thread polls it all the time. (A consumer used as a probe would
//! have to be polled between requests, and its `poll` gives up after the first log
//! event it serves, leaving the error queued behind the next ones.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::{ClientConfig, ClientContext};

use crate::Error;

/// A client context that logs librdkafka's errors (naming refusals as such) and keeps
/// the last one. Clones share what they heard.
#[derive(Debug, Clone, Default)]
pub(crate) struct Watched {
    last: Arc<Mutex<Option<Heard>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Refused(Refusal),
    Other(String),
}

/// A broker turned this client away: waiting longer changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Authentication(String),
    Tls(String),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Authentication(reason) => Error::Authentication(reason),
            Refusal::Tls(reason) => Error::Tls(reason),
        }
    }
}

/// How librdkafka's error is told apart: `_AUTHENTICATION` for a failed SASL exchange,
/// `_SSL` for a failed handshake or certificate check. A connection dropped during the
/// handshake is `_TRANSPORT`, like a broker that is down, so it is not a refusal.
fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Heard {
    match code {
        Some(RDKafkaErrorCode::Authentication) => {
            Heard::Refused(Refusal::Authentication(reason.to_owned()))
        }
        Some(RDKafkaErrorCode::SSL) => Heard::Refused(Refusal::Tls(reason.to_owned())),
        _ => Heard::Other(reason.to_owned()),
    }
}

impl Watched {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Heard>> {
        // What is kept is a plain value, whole or not written yet: a panic elsewhere
        // cannot leave it half-changed.
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn refusal(&self) -> Option<Refusal> {
        match &*self.lock() {
            Some(Heard::Refused(r)) => Some(r.clone()),
            _ => None,
        }
    }

    fn last_reason(&self) -> Option<String> {
        self.lock().as_ref().map(|heard| match heard {
            Heard::Refused(Refusal::Authentication(r) | Refusal::Tls(r)) | Heard::Other(r) => {
                r.clone()
            }
        })
    }

    /// A request got through: what was heard before is history.
    fn clear(&self) {
        *self.lock() = None;
    }
}

impl ClientContext for Watched {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        // "All brokers are down" follows the error that took the last one down, which
        // says more.
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            tracing::warn!("librdkafka: {reason}");
            return;
        }
        let heard = classify(code, reason);
        let mut last = self.lock();
        // rdkafka's producers hand each error to this callback twice in a row.
        if last.as_ref() != Some(&heard) {
            log(&heard, &error);
            *last = Some(heard);
        }
    }
}

/// Logs an error from librdkafka's error callback; a refusal as what it is. librdkafka
/// reports a repeated error of a broker once, so a client refused every few seconds
/// does not flood the log.
pub(crate) fn log_error(error: &KafkaError, reason: &str) {
    log(&classify(error.rdkafka_error_code(), reason), error);
}

fn log(heard: &Heard, error: &KafkaError) {
    match heard {
        Heard::Refused(r) => tracing::error!("{}", Error::from(r.clone())),
        Heard::Other(reason) => tracing::error!("librdkafka: {error}: {reason}"),
    }
}

/// How long one metadata request may wait before the context is asked what it heard.
const STEP: Duration = Duration::from_millis(500);

/// The cluster's metadata, from a producer that `watch` watches, waiting up to
/// `timeout`, or less when a broker refuses this client, which the error then says.
pub(crate) fn metadata(
    producer: &FutureProducer<Watched>,
    watch: &Watched,
    timeout: Duration,
) -> Result<Metadata, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let step = deadline.saturating_duration_since(Instant::now()).min(STEP);
        match producer.client().fetch_metadata(None, step) {
            Ok(md) => {
                watch.clear();
                return Ok(md);
            }
            Err(e) => {
                if let Some(refusal) = watch.refusal() {
                    return Err(refusal.into());
                }
                if Instant::now() >= deadline {
                    return Err(Error::Unreachable {
                        source: e,
                        last: watch.last_reason(),
                    });
                }
            }
        }
    }
}

/// [`metadata`] from a client of its own, made from `config` (blocking).
pub(crate) fn probe(config: &ClientConfig, timeout: Duration) -> Result<Metadata, Error> {
    let watch = Watched::default();
    let producer: FutureProducer<Watched> = config.create_with_context(watch.clone())?;
    metadata(&producer, &watch, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_login_or_handshake_is_named_and_anything_later_replaces_it() {
        let w = Watched::default();
        w.error(
            KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: invalid credentials",
        );
        w.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let err = Error::from(w.refusal().expect("a refusal"));
        assert_eq!(
            err.to_string(),
            "Kafka authentication failed: SASL authentication error: invalid credentials"
        );

        w.error(
            KafkaError::Global(RDKafkaErrorCode::SSL),
            "SSL handshake failed: certificate verify failed",
        );
        assert!(matches!(w.refusal(), Some(Refusal::Tls(_))));

        w.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "Connect to ipv4#127.0.0.1:1 failed: Connection refused",
        );
        assert_eq!(w.refusal(), None, "the broker is down now, not refusing");
        assert_eq!(
            w.last_reason().as_deref(),
            Some("Connect to ipv4#127.0.0.1:1 failed: Connection refused")
        );
        w.clear();
        assert_eq!(w.last_reason(), None);
    }
}
