//! conduit's integration tests: one binary, one module per area.

mod contract;
mod process;
mod raw_peer;
mod support;
