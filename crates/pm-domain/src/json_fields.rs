//! Reading JSON request bodies field by field from raw JSON text, collecting every field
//! error instead of stopping at the first (serde's derive stops at the first).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::time;
use crate::validation::{text_problem, InputError, ValidationErrors};
use crate::webhook::Meta;

/// Parses the top level: it must be one JSON object.
pub(crate) fn parse_object<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, InputError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(InputError::Malformed(
            "the body must be a JSON object".to_owned(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| InputError::Malformed(e.to_string()))
}

/// Collects field errors while reading raw JSON fields.
pub(crate) struct Fields(pub(crate) ValidationErrors);

impl Fields {
    pub(crate) fn required<'a>(
        &mut self,
        name: &str,
        raw: Option<&'a RawValue>,
    ) -> Option<&'a RawValue> {
        if raw.is_none() {
            self.0.push(name, "is required");
        }
        raw
    }

    pub(crate) fn string(&mut self, name: &str, raw: Option<&RawValue>) -> Option<String> {
        let raw = self.required(name, raw)?;
        match serde_json::from_str::<String>(raw.get()) {
            Ok(s) => Some(s),
            Err(_) => {
                self.0
                    .push(name, format!("must be a string (got {})", json_type(raw)));
                None
            }
        }
    }

    pub(crate) fn parsed<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        raw: Option<&RawValue>,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let s = self.string(name, raw)?;
        self.0.check(name, parse(&s))
    }

    pub(crate) fn timestamp(
        &mut self,
        name: &str,
        raw: Option<&RawValue>,
    ) -> Option<DateTime<Utc>> {
        self.parsed(name, raw, time::parse_rfc3339)
    }

    pub(crate) fn optional_timestamp(
        &mut self,
        name: &str,
        raw: Option<&RawValue>,
    ) -> Option<Option<DateTime<Utc>>> {
        match raw {
            None => Some(None),
            Some(_) => self.timestamp(name, raw).map(Some),
        }
    }

    pub(crate) fn meta(&mut self, raw: Option<&RawValue>) -> Option<Meta> {
        let Some(raw) = raw else {
            return Some(Meta::new());
        };
        let Ok(map) = serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get()) else {
            self.0.push(
                "meta",
                format!("must be an object of strings (got {})", json_type(raw)),
            );
            return None;
        };
        let mut meta = Meta::new();
        let mut ok = true;
        for (key, value) in map {
            match serde_json::from_str::<String>(value.get()) {
                Ok(s) => {
                    if let Some(problem) = text_problem(&key, false).or(text_problem(&s, false)) {
                        ok = false;
                        self.0.push(format!("meta.{}", key.escape_debug()), problem);
                    } else {
                        meta.insert(key, s);
                    }
                }
                Err(_) => {
                    ok = false;
                    self.0.push(
                        format!("meta.{key}"),
                        format!("must be a string (got {})", json_type(value)),
                    );
                }
            }
        }
        ok.then_some(meta)
    }
}

/// The JSON type of a raw value, for error messages.
pub(crate) fn json_type(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}
