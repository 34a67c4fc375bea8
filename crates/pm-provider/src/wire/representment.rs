//! Bodies of `POST /api/v1/dispute-representments/create`.

use serde::{Deserialize, Serialize};

/// Request body submitting the merchant's evidence files for a disputed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepresentmentRequest {
    /// The provider's order id. Defaults to blank when absent so that a server answers a
    /// missing id with the same `400` validation error as a blank one.
    #[serde(default)]
    pub order_id: String,
    /// Ids of evidence files already uploaded to the provider. Defaults to empty when absent,
    /// for the same reason as `order_id`.
    #[serde(default)]
    pub evidences_file_id: Vec<String>,
}

/// Response body of an accepted representment (HTTP 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepresentmentResponse {
    /// The provider's id of the representment (our dispute's `submission_id`).
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_tolerates_missing_fields() {
        let request = RepresentmentRequest {
            order_id: "ord-1".into(),
            evidences_file_id: vec!["f1".into(), "f2".into()],
        };
        let json = serde_json::to_string(&request).expect("serialize");
        assert_eq!(
            json,
            r#"{"order_id":"ord-1","evidences_file_id":["f1","f2"]}"#
        );

        let empty: RepresentmentRequest = serde_json::from_str("{}").expect("deserialize");
        assert_eq!(empty.order_id, "");
        assert!(empty.evidences_file_id.is_empty());
    }
}
