//! End-to-end tests of the `conduit` command: the real binary, real processes.

mod errors;
mod exec;
mod formats;
mod harness;
mod help;
mod patterns;
mod proxy;
mod security;
mod send_recv;
mod signals;
mod verbose;
