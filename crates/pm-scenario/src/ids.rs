//! The ids a run uses, all under one prefix: `<prefix>-o<k>` for order `k`,
//! `<prefix>-o<k>-e<j>` for its `j`-th real webhook, `<prefix>-o<k>-f<n>` for its `n`-th
//! fault delivery and `<prefix>-o<k>-file<n>` for evidence files.

use pm_domain::ids::IdError;
use pm_domain::{OrderId, ProviderEventId};

/// Builds the ids of one run.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    prefix: String,
}

/// A generated id; the prefix was validated (at most 85 ASCII letters, digits, `-`, `_`,
/// `.`), so every id built from it is well under the 255-character limit and valid.
fn valid<T>(text: String, parse: impl FnOnce(String) -> Result<T, IdError>) -> T {
    parse(text).unwrap_or_else(|e| unreachable!("a generated id must be valid: {e}"))
}

impl Ids {
    pub(crate) fn new(prefix: String) -> Self {
        Ids { prefix }
    }

    pub(crate) fn order(&self, k: u64) -> OrderId {
        valid(format!("{}-o{k}", self.prefix), OrderId::parse)
    }

    pub(crate) fn event(&self, k: u64, j: usize) -> ProviderEventId {
        valid(format!("{}-o{k}-e{j}", self.prefix), ProviderEventId::parse)
    }

    pub(crate) fn fault(&self, k: u64, n: usize) -> ProviderEventId {
        valid(format!("{}-o{k}-f{n}", self.prefix), ProviderEventId::parse)
    }

    pub(crate) fn file(&self, k: u64, n: usize) -> String {
        format!("{}-o{k}-file{n}", self.prefix)
    }
}
