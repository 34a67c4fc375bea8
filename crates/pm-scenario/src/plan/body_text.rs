//! Serde adapter: a body's bytes as a JSON string (every generated body is UTF-8).

use serde::{de, ser, Deserialize, Deserializer, Serializer};

pub(super) fn serialize<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let text = std::str::from_utf8(body).map_err(ser::Error::custom)?;
    s.serialize_str(text)
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d).map_err(de::Error::custom)?;
    Ok(text.into_bytes())
}
