//! Field-level validation errors, collected rather than returned at the first failure,
//! so a client learns everything that is wrong with a request in one round trip.

use serde::Serialize;

/// Why a piece of free text cannot be accepted, if it cannot: a control character (NUL
/// included) is never data a person meant, PostgreSQL's text type refuses NUL outright, and
/// such text cannot become a header. `multiline` text (evidence) may hold tabs and line
/// breaks.
pub fn text_problem(s: &str, multiline: bool) -> Option<&'static str> {
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    s.chars()
        .any(|c| c.is_control() && !allowed(c))
        .then_some(if multiline {
            "must not contain control characters other than tabs and line breaks"
        } else {
            "must not contain control characters"
        })
}

/// One problem with one field of an input document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's path in the input, e.g. `amount` or `meta.resolution`.
    pub field: String,
    /// What is wrong, written for the person who sent the request.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every field error found in one input document; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError::new(field, message)])
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Records the error of `result` under `field` and turns it into an `Option`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.push(field, err.to_string());
                None
            }
        }
    }
}

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// Why a JSON request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not a JSON object (HTTP 400).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A JSON object with invalid fields (HTTP 422).
    #[error("invalid fields: {0}")]
    Invalid(ValidationErrors),
}

#[cfg(test)]
mod text_tests {
    use super::text_problem;

    #[test]
    fn control_characters_are_refused_line_breaks_only_in_multiline_text() {
        assert_eq!(text_problem("fraud", false), None);
        assert!(text_problem("fraud\u{0}", false).is_some());
        assert!(text_problem("a\u{1b}[31m", false).is_some());
        assert!(text_problem("two\nlines", false).is_some());
        assert_eq!(text_problem("two\nlines\tand a tab", true), None);
        assert!(text_problem("nul\u{0}", true).is_some());
        assert_eq!(text_problem("ünïcødé ✓", false), None);
    }
}
