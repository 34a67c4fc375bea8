//! Why a scenario file was refused: every problem, each naming its field.

use std::fmt;

/// One problem with one field of a scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field's dotted path in the file, e.g. `faults.duplicate` or `money.ranges.JPY.min`.
    pub field: String,
    /// What is wrong, written for the person who edits the file.
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A scenario that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// Not valid TOML, an unknown field, or a value of the wrong type. The message carries
    /// the line and column and names the field.
    #[error("scenario file is not valid: {0}")]
    Syntax(String),
    /// Well-formed, but values are out of range or contradict each other (all listed).
    #[error("scenario file has invalid values:\n{}", list(.0))]
    Invalid(Vec<FieldProblem>),
}

fn list(problems: &[FieldProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ScenarioError {
    /// The field problems of an [`ScenarioError::Invalid`]; empty for syntax errors.
    pub fn problems(&self) -> &[FieldProblem] {
        match self {
            ScenarioError::Invalid(p) => p,
            ScenarioError::Syntax(_) => &[],
        }
    }
}

/// Collects field problems while a scenario is checked, so the author sees all at once.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldProblem>);

impl Problems {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let problem = FieldProblem {
            field: field.into(),
            message: message.into(),
        };
        // A shared default (such as money.min) may be found wrong once per user of it.
        if !self.0.contains(&problem) {
            self.0.push(problem);
        }
    }

    /// A probability: finite and within `0 ..= 1`.
    pub(crate) fn share(&mut self, field: &str, value: f64) {
        if !(0.0..=1.0).contains(&value) {
            self.push(field, format!("must be between 0 and 1 (got {value})"));
        }
    }

    /// An integer within `min ..= max`.
    pub(crate) fn within(&mut self, field: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            self.push(
                field,
                format!("must be between {min} and {max} (got {value})"),
            );
        }
    }

    pub(crate) fn into_result(self) -> Result<(), ScenarioError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ScenarioError::Invalid(self.0))
        }
    }
}
