//! Properties of generated plans, checked with pm-domain's own parsers, signature
//! verifier and state machines (the code the real system runs).

mod support;

mod arrival;
mod bodies;
mod config;
mod determinism;
mod files;
mod props;
mod replay;
mod shares;
