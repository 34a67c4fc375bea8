//! Dispute evidence an operator stores before submitting a representment: free-form text
//! fields and references to files already uploaded to the provider.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validation::{text_problem, ValidationErrors};

/// A file already uploaded to the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceFile {
    pub file_id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

/// The evidence of one dispute (replaced as a whole on every upsert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub fields: BTreeMap<String, String>,
    pub files: Vec<EvidenceFile>,
}

/// Most files one dispute's evidence may reference.
pub const MAX_FILES: usize = 50;
const MAX_TEXT: usize = 10_000;

impl Evidence {
    /// Validates a request body `{fields: {string: string}, files: [{file_id, name,
    /// content_type, size}]}`, reporting every problem. At least one field or file is needed.
    pub fn from_json(body: &Value) -> Result<Self, ValidationErrors> {
        let mut errs = ValidationErrors::new();
        let Some(obj) = body.as_object() else {
            return Err(ValidationErrors::single("body", "must be a JSON object"));
        };
        let mut fields = BTreeMap::new();
        match obj.get("fields") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    match v.as_str() {
                        _ if k.trim().is_empty() => errs.push("fields", "keys must not be blank"),
                        _ if text_problem(k, false).is_some() => errs.push(
                            format!("fields.{}", k.escape_debug()),
                            "the name must not contain control characters",
                        ),
                        Some(s) if text_problem(s, true).is_some() => errs.push(
                            format!("fields.{k}"),
                            text_problem(s, true).unwrap_or_default(),
                        ),
                        Some(s) if s.chars().count() <= MAX_TEXT => {
                            fields.insert(k.clone(), s.to_owned());
                        }
                        Some(_) => errs.push(
                            format!("fields.{k}"),
                            format!("must be at most {MAX_TEXT} characters"),
                        ),
                        None => errs.push(format!("fields.{k}"), "must be a string"),
                    }
                }
            }
            Some(_) => errs.push("fields", "must be an object of strings"),
        }
        let mut files = Vec::new();
        match obj.get("files") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) if items.len() > MAX_FILES => {
                errs.push("files", format!("must list at most {MAX_FILES} files"));
            }
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(f) = file(item, &format!("files[{i}]"), &mut errs) {
                        files.push(f);
                    }
                }
            }
            Some(_) => errs.push("files", "must be an array"),
        }
        if errs.is_empty() && fields.is_empty() && files.is_empty() {
            errs.push("body", "evidence needs at least one field or file");
        }
        if errs.is_empty() {
            Ok(Evidence { fields, files })
        } else {
            Err(errs)
        }
    }

    /// The provider's ids of the referenced files, in order.
    pub fn file_ids(&self) -> Vec<String> {
        self.files.iter().map(|f| f.file_id.clone()).collect()
    }
}

fn file(item: &Value, path: &str, errs: &mut ValidationErrors) -> Option<EvidenceFile> {
    let Some(obj) = item.as_object() else {
        errs.push(path, "must be an object");
        return None;
    };
    let mut text = |name: &str| match obj.get(name).and_then(Value::as_str) {
        Some(s) if text_problem(s, false).is_some() => {
            errs.push(
                format!("{path}.{name}"),
                text_problem(s, false).unwrap_or_default(),
            );
            None
        }
        Some(s) if !s.trim().is_empty() && s.chars().count() <= 255 => Some(s.to_owned()),
        Some(s) if !s.trim().is_empty() => {
            errs.push(format!("{path}.{name}"), "must be at most 255 characters");
            None
        }
        _ => {
            errs.push(
                format!("{path}.{name}"),
                "is required and must be a non-blank string",
            );
            None
        }
    };
    let (file_id, name, content_type) = (text("file_id"), text("name"), text("content_type"));
    let size = obj.get("size").and_then(Value::as_u64);
    if size.is_none() {
        errs.push(
            format!("{path}.size"),
            "is required and must be a non-negative integer",
        );
    }
    Some(EvidenceFile {
        file_id: file_id?,
        name: name?,
        content_type: content_type?,
        size: size?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evidence_text_may_hold_line_breaks_but_no_other_control_character() {
        let ok = serde_json::json!({"fields": {"note": "line one\nline two\tend"}});
        assert!(Evidence::from_json(&ok).is_ok());
        let bad = serde_json::json!({
            "fields": {"note": "nul\u{0}"},
            "files": [{"file_id": "f\u{7}", "name": "x.pdf", "content_type": "application/pdf", "size": 1}]
        });
        let errs = Evidence::from_json(&bad).expect_err("control characters");
        let fields: Vec<_> = errs.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["fields.note", "files[0].file_id"]);
    }

    #[test]
    fn valid_evidence() {
        let e = Evidence::from_json(&json!({
            "fields": {"tracking": "1Z999"},
            "files": [{"file_id": "file_1", "name": "receipt.pdf", "content_type": "application/pdf", "size": 1024}]
        }))
        .expect("valid");
        assert_eq!(e.file_ids(), ["file_1"]);
    }

    #[test]
    fn every_problem_is_reported() {
        let errs = Evidence::from_json(&json!({
            "fields": {"a": 1},
            "files": [{"file_id": "", "name": "x", "content_type": "text/plain", "size": -1}, 7]
        }))
        .unwrap_err();
        let fields: Vec<_> = errs.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["fields.a", "files[0].file_id", "files[0].size", "files[1]"]
        );
    }

    #[test]
    fn empty_evidence_is_refused() {
        assert!(Evidence::from_json(&json!({})).is_err());
        assert!(Evidence::from_json(&json!([])).is_err());
    }
}
