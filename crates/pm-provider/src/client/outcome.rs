//! What a successful call returns.

use crate::wire::{CaptureResponse, RepresentmentResponse, CAPTURE_SUCCESS};

/// The provider's answer to a capture it processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOutcome {
    /// The provider's id of the capture transaction.
    pub transaction_id: String,
    /// The provider's status, kept verbatim so a failure reason reaches the operator.
    pub status: String,
}

impl CaptureOutcome {
    /// Whether the money was captured. Any status other than `success` is a failed capture.
    pub fn is_success(&self) -> bool {
        self.status == CAPTURE_SUCCESS
    }
}

impl From<CaptureResponse> for CaptureOutcome {
    fn from(response: CaptureResponse) -> Self {
        CaptureOutcome {
            transaction_id: response.transaction_id,
            status: response.status,
        }
    }
}

/// A representment the provider accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Representment {
    /// The provider's id of the representment (stored as the dispute's `submission_id`).
    pub id: String,
}

impl From<RepresentmentResponse> for Representment {
    fn from(response: RepresentmentResponse) -> Self {
        Representment { id: response.id }
    }
}
