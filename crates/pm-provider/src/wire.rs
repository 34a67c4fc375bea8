//! The provider API's JSON bodies and the names that go with them (paths, headers).
//!
//! Both sides of the API use these types: the client serializes requests and deserializes
//! responses, the provider simulator does the reverse. Fields are therefore plain wire values
//! (strings, raw JSON numbers) rather than validated domain types: a server must be able to
//! read a *bad* request in order to answer it with a `400` and a useful error body, and the
//! helpers on each type turn the wire values into domain types where that is wanted.
//!
//! Amounts are carried as [`RawValue`](serde_json::value::RawValue) so that the number's text
//! (`100.50`) travels exactly as written in both directions and never passes through a float.
//! Note that `RawValue` can only be read by `serde_json`'s own deserializer (`from_str`,
//! `from_slice`, axum's `Json`), not from an already parsed `serde_json::Value`.

mod capture;
mod error_body;
mod representment;

pub use capture::{CaptureRequest, CaptureResponse};
pub use error_body::{ErrorBody, ErrorDetail};
pub use representment::{RepresentmentRequest, RepresentmentResponse};

/// Path of the capture endpoint, relative to the provider's base URL.
pub const CAPTURE_PATH: &str = "/api/v1/capture";

/// Path of the capture lookup: `GET {CAPTURES_PATH}/{idempotency_key}` answers `200` with the
/// [`CaptureResponse`] of the capture made under that key, or `404` with the error code
/// [`CAPTURE_NOT_FOUND`] when the provider never processed one. The lookup never captures.
pub const CAPTURES_PATH: &str = "/api/v1/captures";

/// The error code of a capture lookup for a key the provider has no capture under. Only this
/// code means "not captured": a bare 404 may be a wrong base URL.
pub const CAPTURE_NOT_FOUND: &str = "capture_not_found";

/// Path of the endpoint that submits a dispute representment (the merchant's evidence).
pub const REPRESENTMENT_PATH: &str = "/api/v1/dispute-representments/create";

/// Header carrying the key that lets the provider recognise a repeated call.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Header carrying the id that ties the provider's logs to ours.
pub const CORRELATION_ID_HEADER: &str = "X-Correlation-ID";

/// The capture `status` that means the money was captured; any other value means it was not.
pub const CAPTURE_SUCCESS: &str = "success";
