//! End-to-end tests of the `conduit` command: the real binary, real processes.

mod harness;
mod send_recv;
