//! Webhook bodies as exact JSON text.
//!
//! A body is an ordered list of fields whose values are already JSON text, so amounts are
//! written exactly as the currency wants them (`100.50`, `1500`) and never pass through a
//! float, the field order is fixed (same plan, same bytes), and the fault generator can
//! replace or drop single fields of a real webhook.

use chrono::{DateTime, Utc};

/// The fields of one JSON object, in order, values as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonFields(Vec<(&'static str, String)>);

/// A string as a JSON string literal.
pub(crate) fn quoted(s: &str) -> String {
    // Serializing a &str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// A timestamp as a JSON string in RFC 3339 with `Z`.
pub(crate) fn time_text(t: &DateTime<Utc>) -> String {
    quoted(&pm_domain::time::format(t))
}

/// String pairs as a JSON object (keys in the given order).
pub(crate) fn map_text(map: &[(&str, &str)]) -> String {
    let inner: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}:{}", quoted(k), quoted(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

impl JsonFields {
    pub(crate) fn new() -> Self {
        JsonFields(Vec::new())
    }

    /// Appends (or replaces) a field whose value is already JSON text.
    pub(crate) fn raw(mut self, key: &'static str, json: impl Into<String>) -> Self {
        self.set_raw(key, json);
        self
    }

    /// Appends (or replaces) a string field.
    pub(crate) fn str(self, key: &'static str, value: &str) -> Self {
        self.raw(key, quoted(value))
    }

    /// Replaces a field in place, or appends it when absent.
    pub(crate) fn set_raw(&mut self, key: &'static str, json: impl Into<String>) {
        let json = json.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = json,
            None => self.0.push((key, json)),
        }
    }

    /// Replaces a string field in place, or appends it.
    pub(crate) fn set_str(&mut self, key: &'static str, value: &str) {
        self.set_raw(key, quoted(value));
    }

    /// Drops a field.
    pub(crate) fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| *k != key);
    }

    /// The JSON text of a field, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The compact JSON object.
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .0
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>(),
        );
        out.push(b'{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(quoted(k).as_bytes());
            out.push(b':');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_render_in_order_with_raw_numbers() {
        let mut f = JsonFields::new()
            .str("id", "a\"b")
            .raw("amount", "100.50")
            .raw("meta", map_text(&[("k", "v")]));
        assert_eq!(
            f.render(),
            br#"{"id":"a\"b","amount":100.50,"meta":{"k":"v"}}"#
        );
        f.set_str("amount", "x");
        f.remove("meta");
        assert_eq!(f.render(), br#"{"id":"a\"b","amount":"x"}"#);
        assert_eq!(f.get("amount"), Some("\"x\""));
    }
}
