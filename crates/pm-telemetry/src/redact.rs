//! The last line of defence for secrets: every secret the process was given is
//! registered here, and every log line and printed error passes through [`scrub`] on
//! its way out, which replaces any registered secret with `***`.
//!
//! Our own code never formats a secret (the types that hold them redact their `Debug`),
//! but libraries do: librdkafka, for one, quotes the value of a property it rejects.
//! Scrubbing the output catches what no type can.
//!
//! Values shorter than [`MIN_LEN`] are not registered: scrubbing them would mangle
//! ordinary text, and a secret that short protects nothing anyway.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;

/// Shortest value treated as a secret.
pub const MIN_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `secret` for [`scrub`].
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by `***`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), "***"));
        }
    }
    out
}

/// A writer that scrubs what it writes. The log formatter writes each event with one
/// `write_all` of the whole line, so a secret is never split across two writes.
#[derive(Debug)]
pub struct Scrubbing<W>(pub W);

impl<W: Write> Write for Scrubbing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(scrub(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_replaced_wherever_they_appear() {
        register("hunter2-long-secret");
        register("abc"); // too short to register
        let out = scrub("property sasl.password hunter2-long-secret rejected; abc stays");
        assert_eq!(out, "property sasl.password *** rejected; abc stays");
        let mut sink = Scrubbing(Vec::new());
        sink.write_all(b"key=hunter2-long-secret\n").unwrap();
        assert_eq!(sink.0, b"key=***\n");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }
}
