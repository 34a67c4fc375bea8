//! The kinds of audit-trail events. Every change to an order or a dispute, and every
//! webhook received for one, is recorded as one event row of these kinds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::order::UnknownStatus;

macro_rules! kinds {
    ($(#[$doc:meta])* $name:ident, $expected:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus { got: s.to_owned(), expected: $expected }),
                }
            }
        }
    };
}

kinds!(
    /// Events of an order.
    OrderEventKind,
    "webhook_received, hold_set, hold_cleared, capture_requested, capture_completed, capture_failed, capture_unknown",
    {
        WebhookReceived => "webhook_received",
        HoldSet => "hold_set",
        HoldCleared => "hold_cleared",
        CaptureRequested => "capture_requested",
        CaptureCompleted => "capture_completed",
        CaptureFailed => "capture_failed",
        CaptureUnknown => "capture_unknown",
    }
);

kinds!(
    /// Events of a dispute.
    DisputeEventKind,
    "webhook_opened, webhook_updated, provider_decision, evidence_added, evidence_submitted",
    {
        WebhookOpened => "webhook_opened",
        WebhookUpdated => "webhook_updated",
        ProviderDecision => "provider_decision",
        EvidenceAdded => "evidence_added",
        EvidenceSubmitted => "evidence_submitted",
    }
);

impl DisputeEventKind {
    /// The event recorded for a chargeback webhook of the given status.
    pub fn for_chargeback(status: crate::dispute::ChargebackStatus) -> Self {
        use crate::dispute::ChargebackStatus as S;
        match status {
            S::Opened => DisputeEventKind::WebhookOpened,
            S::Updated => DisputeEventKind::WebhookUpdated,
            S::Closed => DisputeEventKind::ProviderDecision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in OrderEventKind::ALL {
            assert_eq!(k.as_str().parse::<OrderEventKind>(), Ok(*k));
        }
        for k in DisputeEventKind::ALL {
            assert_eq!(k.as_str().parse::<DisputeEventKind>(), Ok(*k));
        }
        assert!("webhook".parse::<OrderEventKind>().is_err());
    }
}
