//! conduit's integration tests: one binary, one module per area.

mod contract;
mod interop_pair;
mod pattern_pipeline;
mod pattern_reqrep;
mod process;
mod pyzmq;
mod raw_peer;
mod send_path;
mod sockets;
mod support;
