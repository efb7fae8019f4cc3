//! conduit's integration tests: one binary, one module per area.

mod api_shapes;
#[cfg(feature = "tokio")]
mod async_sockets;
mod attachments;
mod contract;
mod engine;
mod faults;
mod guide_examples;
mod hostile_peers;
mod inproc;
mod interop_pair;
mod interop_patterns;

mod nothing_lost;
mod pattern_connections;
mod pattern_pipeline;
mod pattern_pubsub;
mod pattern_reqrep;
mod process;
mod pyzmq;
mod raw_peer;
mod security;
mod send_path;
mod server_child;
mod socket_model;
mod sockets;
mod support;
