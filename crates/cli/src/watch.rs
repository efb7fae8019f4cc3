//! What happens to a socket's connections: printed to standard error with `-v`
//! (problems always), and remembered to explain a timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use conduit::SocketEvent;

/// Watches one socket's connection events.
#[derive(Debug)]
pub struct Watch {
    /// Names the socket in what is printed: `push`, `frontend`...
    role: String,
    verbose: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Peers that completed their handshake, ever.
    ready: u64,
    /// The last reason each connecting endpoint gave for not connecting.
    connect_errors: BTreeMap<String, String>,
}

impl Watch {
    pub fn new(role: impl Into<String>, verbose: bool) -> Arc<Watch> {
        Arc::new(Watch {
            role: role.into(),
            verbose,
            state: Mutex::new(State::default()),
        })
    }

    /// Prints a line about the socket (with -v), in the form events take.
    pub fn note(&self, what: impl std::fmt::Display) {
        if self.verbose {
            crate::say(format_args!("{}: {what}", self.role));
        }
    }

    /// Called by the socket, from the thread running its I/O, for each event.
    pub fn on_event(&self, event: &SocketEvent) {
        // A peer that fails or breaks the protocol is worth knowing about even
        // without -v: otherwise the command just seems to wait.
        let problem = matches!(
            event,
            SocketEvent::HandshakeFailed { .. }
                | SocketEvent::Rejected { .. }
                | SocketEvent::AcceptFailed { .. }
                | SocketEvent::Disconnected { error: Some(_), .. }
        );
        if self.verbose || problem {
            crate::say(format_args!("{}: {event}", self.role));
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            SocketEvent::Ready { .. } => st.ready += 1,
            SocketEvent::Retrying {
                endpoint,
                error: Some(e),
                ..
            } => {
                st.connect_errors
                    .insert(endpoint.clone(), crate::cause_chain(e));
            }
            _ => {}
        }
    }

    /// Why no peer is there, if none ever came and a connect failed: to say
    /// with a timeout.
    pub fn why_no_peer(&self) -> Option<String> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.ready > 0 || st.connect_errors.is_empty() {
            return None;
        }
        Some(
            st.connect_errors
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}
