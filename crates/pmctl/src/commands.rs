//! One module per subcommand.

pub(crate) mod migrate;
pub(crate) mod partition_maintain;
pub(crate) mod serve_api;
