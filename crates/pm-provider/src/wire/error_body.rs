//! The body of every 4xx answer: `{"error": {"code", "message", "constraints"?}}`.

use serde::{Deserialize, Serialize};

/// The provider's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The contents of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable reason, e.g. `validation_error` or `file_not_ready`.
    pub code: String,
    /// Human-readable explanation, safe to show to an operator.
    pub message: String,
    /// Free-form details (which fields, which files); absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<serde_json::Value>,
}

impl ErrorBody {
    /// An error body without constraints.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                constraints: None,
            },
        }
    }

    /// The same body carrying `constraints`.
    pub fn with_constraints(mut self, constraints: serde_json::Value) -> Self {
        self.error.constraints = Some(constraints);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn constraints_are_optional_both_ways() {
        let plain = ErrorBody::new("file_not_ready", "file f1 is still processing");
        assert_eq!(
            serde_json::to_value(&plain).expect("serialize"),
            json!({"error": {"code": "file_not_ready", "message": "file f1 is still processing"}})
        );

        let body = r#"{"error":{"code":"validation_error","message":"bad","constraints":{"evidences_file_id":"min 1"}}}"#;
        let parsed: ErrorBody = serde_json::from_str(body).expect("deserialize");
        assert_eq!(
            parsed,
            ErrorBody::new("validation_error", "bad")
                .with_constraints(json!({"evidences_file_id": "min 1"}))
        );
    }
}
