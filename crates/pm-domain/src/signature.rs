//! Webhook signatures: `Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.
//!
//! The MAC covers `"<t>.<raw body>"`, so the raw bytes are verified before anything parses
//! them. Several `v1=` values and several accepted secrets allow secret rotation: any
//! configured secret matching any `v1` passes. The timestamp must be within the tolerance
//! of now (in either direction) so a captured request cannot be replayed later. Comparison
//! is constant-time.

use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header that carries the signature.
pub const HEADER: &str = "Webhook-Signature";

/// Default allowed clock difference between the provider's `t` and ours, in seconds.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused (all map to HTTP 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Webhook-Signature header is missing")]
    Missing,
    #[error("the Webhook-Signature header must look like t=<unix seconds>,v1=<hex hmac>")]
    Malformed,
    #[error("the signature timestamp is {age_secs} s away from now; at most {tolerance_secs} s is accepted")]
    Stale { age_secs: i64, tolerance_secs: i64 },
    #[error("no v1 signature matches the body with any configured secret")]
    Mismatch,
}

/// Computes the hex `v1` signature of `body` at time `t`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, t, body).finalize().into_bytes())
}

/// A complete header value for `body` signed with `secret` at time `t`.
pub fn header_value(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// Verifies signatures against a set of accepted secrets.
///
/// A `Verifier` is a handle: its clones share one set of secrets, so [`rotate`]
/// (Self::rotate) on any of them changes what every copy accepts — the server's state and
/// the SIGHUP handler hold clones of one verifier.
#[derive(Clone)]
pub struct Verifier {
    secrets: Arc<RwLock<Arc<[Vec<u8>]>>>,
    tolerance_secs: i64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.current().len()),
            )
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Verifier {
    pub fn new(secrets: Vec<Vec<u8>>, tolerance_secs: i64) -> Self {
        Self {
            secrets: Arc::new(RwLock::new(secrets.into())),
            tolerance_secs,
        }
    }

    /// Replaces the accepted secrets (a rotation without restart). Requests already being
    /// checked finish with the set they started with.
    pub fn rotate(&self, secrets: Vec<Vec<u8>>) {
        *self.secrets.write().unwrap_or_else(|e| e.into_inner()) = secrets.into();
    }

    /// How many secrets are accepted now.
    pub fn secret_count(&self) -> usize {
        self.current().len()
    }

    fn current(&self) -> Arc<[Vec<u8>]> {
        self.secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks `header` for `body` at the current unix time `now`.
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let mut t = None;
        let mut candidates = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => {
                    t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
                }
                Some(("v1", v)) => {
                    candidates.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?)
                }
                Some(_) => {} // other schemes (v0, future versions) are ignored
                None => return Err(SignatureError::Malformed),
            }
        }
        let t = t.ok_or(SignatureError::Malformed)?;
        if candidates.is_empty() {
            return Err(SignatureError::Malformed);
        }
        let age_secs = now.saturating_sub(t).saturating_abs();
        if age_secs > self.tolerance_secs {
            return Err(SignatureError::Stale {
                age_secs,
                tolerance_secs: self.tolerance_secs,
            });
        }
        let matched = self.current().iter().any(|secret| {
            let expected = mac(secret, t, body);
            candidates
                .iter()
                .any(|c| expected.clone().verify_slice(c).is_ok())
        });
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_rotation_reaches_every_clone() {
        let body = b"{}";
        let (now, old, new) = (1_700_000_000, b"old".as_slice(), b"new".as_slice());
        let verifier = Verifier::new(vec![old.to_vec()], 300);
        let serving = verifier.clone();
        let signed_new = header_value(new, now, body);
        assert!(serving.verify(Some(&signed_new), body, now).is_err());
        verifier.rotate(vec![old.to_vec(), new.to_vec()]);
        assert_eq!(serving.secret_count(), 2);
        serving.verify(Some(&signed_new), body, now).unwrap();
        verifier.rotate(vec![new.to_vec()]);
        let signed_old = header_value(old, now, body);
        assert!(serving.verify(Some(&signed_old), body, now).is_err());
    }

    const NOW: i64 = 1_800_000_000;

    fn verifier() -> Verifier {
        Verifier::new(
            vec![b"old-secret".to_vec(), b"new-secret".to_vec()],
            DEFAULT_TOLERANCE_SECS,
        )
    }

    #[test]
    fn a_signature_from_any_configured_secret_passes() {
        let body = br#"{"a":1}"#;
        for secret in [&b"old-secret"[..], b"new-secret"] {
            assert_eq!(
                verifier().verify(Some(&header_value(secret, NOW, body)), body, NOW),
                Ok(())
            );
        }
    }

    #[test]
    fn several_v1_values_allow_rotation_on_the_sender_side() {
        let body = b"{}";
        let header = format!(
            "t={NOW},v1={},v1={}",
            sign(b"unknown", NOW, body),
            sign(b"new-secret", NOW, body)
        );
        assert_eq!(verifier().verify(Some(&header), body, NOW), Ok(()));
    }

    #[test]
    fn refusals_say_why() {
        let body = b"{}";
        let v = verifier();
        assert_eq!(v.verify(None, body, NOW), Err(SignatureError::Missing));
        assert_eq!(
            v.verify(Some("garbage"), body, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v.verify(Some("t=abc,v1=00"), body, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v.verify(Some(&format!("t={NOW}")), body, NOW),
            Err(SignatureError::Malformed)
        );
        let stale = header_value(b"new-secret", NOW - 301, body);
        assert!(matches!(
            v.verify(Some(&stale), body, NOW),
            Err(SignatureError::Stale { age_secs: 301, .. })
        ));
        let future = header_value(b"new-secret", NOW + 301, body);
        assert!(matches!(
            v.verify(Some(&future), body, NOW),
            Err(SignatureError::Stale { .. })
        ));
        let edge = header_value(b"new-secret", NOW - 300, body);
        assert_eq!(v.verify(Some(&edge), body, NOW), Ok(()));
        let wrong = header_value(b"other", NOW, body);
        assert_eq!(
            v.verify(Some(&wrong), body, NOW),
            Err(SignatureError::Mismatch)
        );
        let tampered = header_value(b"new-secret", NOW, b"{ }");
        assert_eq!(
            v.verify(Some(&tampered), body, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let shown = format!("{:?}", verifier());
        assert!(
            shown.contains("redacted") && !shown.contains("old") && !shown.contains("111"),
            "{shown}"
        );
    }

    proptest! {
        #[test]
        fn any_body_signed_verifies_and_any_change_fails(body in proptest::collection::vec(any::<u8>(), 0..512), flip in any::<usize>()) {
            let header = header_value(b"new-secret", NOW, &body);
            prop_assert_eq!(verifier().verify(Some(&header), &body, NOW), Ok(()));
            if !body.is_empty() {
                let mut changed = body.clone();
                let i = flip % changed.len();
                changed[i] ^= 0x01;
                prop_assert_eq!(verifier().verify(Some(&header), &changed, NOW), Err(SignatureError::Mismatch));
            }
        }
    }
}
