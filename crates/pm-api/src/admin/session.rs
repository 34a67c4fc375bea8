//! Admin sessions: an operator logs in once with an API key and gets a session cookie.
//!
//! The cookie holds the key's id, an expiry and a random nonce, signed with HMAC-SHA256
//! under the server's session secret: nothing is stored per session, so any instance with
//! the same secret accepts it. It never holds the key's secret, and it carries no scopes:
//! every request looks the key up again ([`crate::auth::session_key`]), so revoking or
//! expiring the key ends its sessions everywhere within the key cache's lifetime, and a
//! changed scope applies at once. Logging out ends the session on the instance that
//! served the logout (its nonce is refused until the cookie would have expired anyway) and
//! clears the cookie in the browser.
//!
//! Cross-site requests are refused twice over: the cookie is `SameSite=Strict` (a browser
//! does not send it with a request another site starts), and every form carries a CSRF
//! token derived from the session's nonce with the same secret, checked on every `POST`.
//! The login form, which has no session yet, carries a random token that must match a
//! short-lived cookie set with the form.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use pm_domain::api_key::KeyId;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie.
pub(crate) const COOKIE: &str = "pm_admin";
/// The login form's cookie (its token).
pub(crate) const LOGIN_COOKIE: &str = "pm_admin_login";

type HmacSha256 = Hmac<Sha256>;

/// A session cookie that verified: whose, and until when.
#[derive(Debug, Clone)]
pub(crate) struct Opened {
    pub(crate) key_id: KeyId,
    pub(crate) nonce: String,
    pub(crate) expires: i64,
}

/// Issues and checks session cookies.
pub(crate) struct Sessions {
    key: [u8; 32],
    ttl: Duration,
    /// Nonces of sessions logged out on this instance, with their expiry.
    ended: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Sessions signed under `secret`, or under a random secret of this process when there
    /// is none (sessions then end with the process and hold on this instance only).
    pub(crate) fn new(secret: Option<&SecretString>, ttl: Duration) -> Self {
        let key = match secret {
            Some(s) => Sha256::new()
                .chain_update(b"payment-manager admin session\n")
                .chain_update(s.expose_secret().as_bytes())
                .finalize()
                .into(),
            None => {
                let mut k = [0u8; 32];
                rand::rng().fill_bytes(&mut k);
                k
            }
        };
        Sessions {
            key,
            ttl,
            ended: Mutex::default(),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, purpose: &str, parts: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        for p in parts {
            mac.update(b"\n");
            mac.update(p.as_bytes());
        }
        mac
    }

    /// A new session of `key_id` from `now`: the cookie's value.
    pub(crate) fn issue(&self, key_id: &KeyId, now: DateTime<Utc>) -> String {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expires = now.timestamp().saturating_add(ttl).to_string();
        let nonce = random_hex(16);
        let tag = self
            .mac("session", &[key_id.as_str(), &expires, &nonce])
            .finalize()
            .into_bytes();
        format!(
            "{}.{expires}.{nonce}.{}",
            key_id.as_str(),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The session of a cookie's value, when it is ours, unexpired and not logged out.
    pub(crate) fn open(&self, value: &str, now: DateTime<Utc>) -> Option<Opened> {
        let mut parts = value.split('.');
        let (id, expires, nonce, tag) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac("session", &[id, expires, nonce])
            .verify_slice(&tag)
            .ok()?;
        let expires: i64 = expires.parse().ok()?;
        if expires <= now.timestamp() {
            return None;
        }
        if self.ended.lock().ok()?.contains_key(nonce) {
            return None;
        }
        Some(Opened {
            key_id: KeyId::parse(id)?,
            nonce: nonce.to_owned(),
            expires,
        })
    }

    /// Ends a session on this instance (logout).
    pub(crate) fn end(&self, session: &Opened, now: DateTime<Utc>) {
        if let Ok(mut ended) = self.ended.lock() {
            let now = now.timestamp();
            ended.retain(|_, expires| *expires > now);
            ended.insert(session.nonce.clone(), session.expires);
        }
    }

    /// The CSRF token of a session's forms.
    pub(crate) fn csrf(&self, session: &Opened) -> String {
        URL_SAFE_NO_PAD.encode(
            self.mac("csrf", &[session.key_id.as_str(), &session.nonce])
                .finalize()
                .into_bytes(),
        )
    }

    /// A fresh token for the login form (and its cookie).
    pub(crate) fn login_token() -> String {
        random_hex(16)
    }
}

/// Constant-time equality of two tokens.
pub(crate) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, under `path`, Secure when the browser
/// reached us over TLS; `max_age` 0 deletes it.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: Duration,
    secure: bool,
) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_id() -> KeyId {
        KeyId::parse("0123456789abcdef").expect("a key id")
    }

    #[test]
    fn a_session_opens_until_it_expires_or_ends() {
        let sessions = Sessions::new(None, Duration::from_secs(3600));
        let now = pm_domain::time::now();
        let cookie = sessions.issue(&key_id(), now);
        let opened = sessions.open(&cookie, now).expect("a fresh session opens");
        assert_eq!(opened.key_id, key_id());
        assert!(sessions
            .open(&cookie, now + chrono::Duration::seconds(3600))
            .is_none());

        sessions.end(&opened, now);
        assert!(sessions.open(&cookie, now).is_none(), "logged out");
    }

    #[test]
    fn a_changed_or_foreign_cookie_does_not_open() {
        let secret = SecretString::from("a shared secret of at least thirty-two bytes");
        let a = Sessions::new(Some(&secret), Duration::from_secs(60));
        let b = Sessions::new(Some(&secret), Duration::from_secs(60));
        let other = Sessions::new(None, Duration::from_secs(60));
        let now = pm_domain::time::now();
        let cookie = a.issue(&key_id(), now);
        assert!(
            b.open(&cookie, now).is_some(),
            "the same secret opens it anywhere"
        );
        assert!(other.open(&cookie, now).is_none());

        // Another key id, a later expiry, a cut tag, an extra part: all refused.
        let parts: Vec<&str> = cookie.split('.').collect();
        let forged = [
            format!("fedcba9876543210.{}.{}.{}", parts[1], parts[2], parts[3]),
            format!(
                "{}.{}.{}.{}",
                parts[0],
                parts[1].parse::<i64>().expect("expiry") + 9999,
                parts[2],
                parts[3]
            ),
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], &parts[3][..10]),
            format!("{cookie}.x"),
            String::new(),
        ];
        for f in forged {
            assert!(a.open(&f, now).is_none(), "{f:?} must not open");
        }
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let sessions = Sessions::new(None, Duration::from_secs(60));
        let now = pm_domain::time::now();
        let one = sessions
            .open(&sessions.issue(&key_id(), now), now)
            .expect("open");
        let two = sessions
            .open(&sessions.issue(&key_id(), now), now)
            .expect("open");
        assert_eq!(sessions.csrf(&one), sessions.csrf(&one));
        assert_ne!(sessions.csrf(&one), sessions.csrf(&two));
        assert!(same_token(&sessions.csrf(&one), &sessions.csrf(&one)));
        assert!(!same_token(&sessions.csrf(&one), &sessions.csrf(&two)));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; pm_admin=xyz".parse().expect("value"));
        h.append("cookie", "b=2".parse().expect("value"));
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "pm"), None);
        let set = set_cookie(COOKIE, "v", "/admin", Duration::from_secs(5), true);
        assert_eq!(
            set,
            "pm_admin=v; Path=/admin; Max-Age=5; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
