//! The threads that make and keep a socket's connections.
//!
//! - one per bound endpoint, accepting;
//! - one per connection, which completes the handshake and then reads from the
//!   peer for as long as it is in service (answering heartbeats on the way);
//! - one per connected endpoint, which connects, serves the connection as above,
//!   and reconnects with a growing delay when it ends.
//!
//! A slow or silent peer only ever holds up its own thread: handshakes have a
//! timeout and never run on the accepting thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conduit_proto::{Command, Heartbeat, HeartbeatAction};
use rustix::event::{PollFd, PollFlags};

use super::core::{Core, Peer};
use super::events::SocketEvent;
use crate::channel::Channel;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::reader::RecvFail;
use crate::transport::socket::SocketStream;
use crate::transport::{self, Listen, Wait};

/// Starts a named thread that the socket joins when it closes.
pub(crate) fn spawn(
    core: &Arc<Core>,
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), Error> {
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| Error::io(format!("cannot start a {name} thread"), e))?;
    let mut st = core.lock();
    st.threads.retain(|h| !h.is_finished());
    st.threads.push(handle);
    Ok(())
}

/// Binds `endpoint` and starts accepting on it; returns the bound endpoint.
pub(crate) fn bind(core: &Arc<Core>, endpoint: &Endpoint) -> Result<Endpoint, Error> {
    let listen = Listen::bind(endpoint, core.options.channel.ipc_mode)?;
    listen
        .set_nonblocking()
        .map_err(|e| Error::io(format!("cannot use {endpoint}"), e))?;
    let bound = listen.endpoint().clone();
    core.emit(SocketEvent::Listening {
        endpoint: bound.to_string(),
    });
    let c = core.clone();
    spawn(core, "conduit-accept", move || accept_loop(c, listen))?;
    Ok(bound)
}

fn accept_loop(core: Arc<Core>, listen: Listen) {
    let bound = listen.endpoint().to_string();
    loop {
        let mut fds = [
            PollFd::new(&listen, PollFlags::IN),
            PollFd::from_borrowed_fd(core.waker.fd(), PollFlags::IN),
        ];
        if let Err(e) = rustix::event::poll(&mut fds, None) {
            if e != rustix::io::Errno::INTR {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if core.lock().closing {
            return; // dropping `listen` closes it and removes an ipc file
        }
        match listen.accept() {
            Ok((stream, from)) => {
                let link = format!("{bound} from {from}");
                core.emit(SocketEvent::Connected { link: link.clone() });
                let c = core.clone();
                let _ = spawn(&core, "conduit-peer", move || {
                    serve_connection(&c, stream, link);
                });
            }
            Err(e) if is_would_block(&e) => {}
            Err(e) => {
                // Out of descriptors, say: say so, and do not spin.
                core.emit(SocketEvent::HandshakeFailed {
                    link: bound.clone(),
                    error: e,
                });
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn is_would_block(e: &Error) -> bool {
    e.io_error()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::WouldBlock)
}

/// Starts connecting to `endpoint`, and reconnecting whenever the connection ends.
pub(crate) fn connect(core: &Arc<Core>, endpoint: Endpoint) -> Result<(), Error> {
    let c = core.clone();
    spawn(core, "conduit-connect", move || connect_loop(c, endpoint))
}

fn connect_loop(core: Arc<Core>, endpoint: Endpoint) {
    let first = core.options.reconnect_ivl;
    let max = core.options.reconnect_ivl_max.max(first);
    let mut delay = first;
    loop {
        if core.lock().closing {
            return;
        }
        let outcome = match transport::connect(&endpoint) {
            Ok(stream) => {
                let link = endpoint.to_string();
                core.emit(SocketEvent::Connected { link: link.clone() });
                serve_connection(&core, stream, link)
            }
            Err(e) => Served::Failed(e),
        };
        let error = match outcome {
            // It was in service: start the back-off over.
            Served::Ended(error) => {
                delay = first;
                error
            }
            Served::Failed(error) => Some(error),
        };
        if core.lock().closing {
            return;
        }
        core.emit(SocketEvent::Retrying {
            endpoint: endpoint.to_string(),
            delay,
            error,
        });
        if !sleep_unless_closing(&core, delay) {
            return;
        }
        delay = (delay * 2).min(max);
    }
}

/// Sleeps for `delay`; false if the socket started closing meanwhile.
fn sleep_unless_closing(core: &Core, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    let mut st = core.lock();
    while !st.closing {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        st = core
            .closed
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    false
}

/// How serving a connection went.
enum Served {
    /// The peer was in service, then left (with the error, if it was not clean).
    Ended(Option<Error>),
    /// It never got into service.
    Failed(Error),
}

/// Handshakes with a new connection, puts the peer in service and reads from it
/// until it goes away.
fn serve_connection(core: &Arc<Core>, stream: SocketStream, link: String) -> Served {
    let channel = match Channel::start(stream, core.options.channel.clone()) {
        Ok(c) => Arc::new(c),
        Err(e) => return Served::Failed(e),
    };
    // Registered while in the handshake, so that closing the socket can abort it.
    let ticket = {
        let mut st = core.lock();
        if st.closing {
            return Served::Failed(Error::SocketClosed);
        }
        let ticket = st.next_peer_id;
        st.next_peer_id += 1;
        st.handshaking.insert(ticket, channel.clone());
        ticket
    };
    let handshake = channel.complete_handshake(core.options.channel.handshake_timeout);
    core.lock().handshaking.remove(&ticket);
    let info = match handshake {
        Ok(info) => info,
        Err(error) => {
            core.emit(SocketEvent::HandshakeFailed {
                link,
                error: error.clone(),
            });
            return Served::Failed(error);
        }
    };
    core.emit(SocketEvent::Ready {
        link: link.clone(),
        peer: info.socket_type,
        identity: info.identity.clone(),
    });
    let peer = match core.add_peer(channel, info) {
        Ok(peer) => peer,
        Err((_, reason)) => {
            core.emit(SocketEvent::Rejected {
                link,
                reason: reason.clone(),
            });
            return Served::Failed(Error::Unsupported(reason));
        }
    };
    let error = read_from(core, &peer);
    core.remove_peer(peer.id);
    core.emit(SocketEvent::Disconnected {
        link,
        error: error.clone(),
    });
    Served::Ended(error)
}

/// Reads from a peer in service until it goes away (None: it closed cleanly, or
/// the socket is closing), keeping its heartbeat.
fn read_from(core: &Core, peer: &Peer) -> Option<Error> {
    let mut heartbeat = Heartbeat::new(core.options.heartbeat, Instant::now());
    // Messages are handed over a run at a time (see `Core::deliver`).
    let mut batch = VecDeque::new();
    loop {
        heartbeat.on_traffic(peer.channel.last_input());
        let wait = heartbeat.poll_timeout().map_or(Wait::Forever, Wait::Until);
        let received = peer.channel.recv_batch_hooked(
            wait,
            |cmd| {
                if let Command::Ping { ttl, .. } = cmd {
                    heartbeat.on_ping(*ttl, Instant::now());
                }
                core.on_command(peer, cmd)
            },
            &mut batch,
        );
        match received {
            Ok(()) => match core.deliver(peer, &mut batch) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    peer.channel.drop_for(&e);
                    return Some(e);
                }
            },
            Err(RecvFail::WouldBlock) => {
                heartbeat.on_traffic(peer.channel.last_input());
                match heartbeat.handle_timeout(Instant::now()) {
                    Some(HeartbeatAction::Ping { ttl_deciseconds }) => {
                        let ping = Command::Ping {
                            ttl: ttl_deciseconds,
                            context: Default::default(),
                        };
                        if let Err(e) = peer.channel.send_command(&ping) {
                            return Some(e);
                        }
                    }
                    Some(HeartbeatAction::Expired) => {
                        peer.channel.abort();
                        return Some(Error::PeerSilent);
                    }
                    None => {}
                }
            }
            Err(RecvFail::Closed) => return None,
            Err(RecvFail::Broken(e)) => {
                if core.lock().closing {
                    return None;
                }
                return Some(e);
            }
        }
    }
}
