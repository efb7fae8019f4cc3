//! conduit's integration tests: one binary, one module per area.

mod contract;
mod interop_pair;
mod process;
mod pyzmq;
mod raw_peer;
mod support;
