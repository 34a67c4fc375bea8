//! Operator API keys: what they look like, what they allow, and how one is checked.
//!
//! A key is `pmk_<id>_<secret>`: `pmk_` makes a leaked key recognisable (secret scanners,
//! logs), `<id>` (16 hex digits) names the stored key without revealing anything, and
//! `<secret>` is 256 random bits. Only SHA-256 of the secret is stored: the secret has far
//! too much entropy for a slow hash to add anything, and checking must be cheap because it
//! happens on every request. Comparison is constant-time.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every key.
pub const PREFIX: &str = "pmk_";

/// What a key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every read of orders, disputes, events, captures and evidence.
    Read,
    /// Operator actions: hold, capture, evidence, submit.
    Operate,
    /// The audit trail and key management over HTTP.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Operate, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (expected read, operate or admin)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, UnknownScope> {
        match s {
            "read" => Ok(Scope::Read),
            "operate" => Ok(Scope::Operate),
            "admin" => Ok(Scope::Admin),
            other => Err(UnknownScope(other.to_owned())),
        }
    }
}

/// The public id of a key (16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stored id, as written by [`NewKey::generate`].
    pub fn parse(s: &str) -> Option<KeyId> {
        (s.len() == 16
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| KeyId(s.to_owned()))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly made key: the token to hand out once, and what to store.
pub struct NewKey {
    pub id: KeyId,
    /// `pmk_<id>_<secret>`: shown once, never stored.
    pub token: String,
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NewKey {
    pub fn generate() -> NewKey {
        let mut rng = rand::rng();
        let mut id = [0u8; 8];
        rng.fill_bytes(&mut id);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let secret = URL_SAFE_NO_PAD.encode(secret);
        let id = KeyId(hex::encode(id));
        NewKey {
            token: format!("{PREFIX}{id}_{secret}"),
            secret_hash: hash(&secret),
            id,
        }
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A key as presented in `Authorization: Bearer …`, split but not yet checked.
pub struct Presented {
    pub id: KeyId,
    secret_hash: [u8; 32],
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Presented {
    /// Splits a token; `None` when it cannot be a key of ours.
    pub fn parse(token: &str) -> Option<Presented> {
        let rest = token.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let id = KeyId::parse(id)?;
        if secret.len() != 43 {
            return None;
        }
        Some(Presented {
            id,
            secret_hash: hash(secret),
        })
    }

    /// Whether the secret matches the stored hash, in constant time.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        bool::from(self.secret_hash.ct_eq(stored_hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_recognisable_and_checks_against_its_hash_only() {
        let key = NewKey::generate();
        assert!(key.token.starts_with("pmk_"));
        assert_eq!(key.token.len(), 4 + 16 + 1 + 43);
        let presented = Presented::parse(&key.token).expect("parses");
        assert_eq!(presented.id, key.id);
        assert!(presented.matches(&key.secret_hash));
        let other = NewKey::generate();
        assert!(!presented.matches(&other.secret_hash));
        assert!(
            !presented.matches(&key.secret_hash[..31]),
            "a short hash never matches"
        );
        assert_ne!(key.id, other.id);
        assert!(
            !format!("{key:?}").contains(&key.token[21..]),
            "Debug hides the secret"
        );
    }

    #[test]
    fn tokens_that_cannot_be_keys_are_refused_before_any_lookup() {
        let key = NewKey::generate();
        for bad in [
            "",
            "pmk_",
            &key.token[4..],
            &key.token.replace("pmk_", "pmx_"),
            &key.token[..key.token.len() - 1],
            "pmk_0123456789ABCDEF_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "pmk_0123456789abcdef",
        ] {
            assert!(Presented::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_parse_and_print() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>(), Ok(s));
        }
        assert!("write".parse::<Scope>().is_err());
    }
}
