//! The threads that make and keep a socket's connections.
//!
//! - one per bound endpoint, accepting;
//! - one per connection, which completes the handshake and then reads from the
//!   peer for as long as it is in service (answering heartbeats on the way),
//!   except while an application thread waiting in `recv` reads it instead
//!   (see [`read_direct`]);
//! - one per connected endpoint, which connects, serves the connection as above,
//!   and reconnects with a growing delay when it ends.
//!
//! A slow or silent peer only ever holds up its own thread: handshakes have a
//! timeout and never run on the accepting thread.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use conduit_proto::{Command, Heartbeat, HeartbeatAction};
use rustix::event::{PollFd, PollFlags};

use super::core::{Core, Peer, ReadRole};
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
        user_id: info.user_id.clone(),
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

/// How long an application thread keeps the reading role of a peer while it is
/// not in `recv`, before the connection thread takes it back: what arrives
/// meanwhile (a PING, the peer leaving) waits at most this long, or until the
/// next heartbeat deadline if that is sooner. So does a peer whose socket
/// gained a second peer meanwhile (only a socket's only peer is read directly).
const LEASE: Duration = Duration::from_millis(50);

/// Reads from a peer in service until it goes away (None: it closed cleanly, or
/// the socket is closing), keeping its heartbeat.
fn read_from(core: &Core, peer: &Peer) -> Option<Error> {
    let end = read_loop(core, peer);
    peer.role().conn_done = true;
    peer.role_changed.notify_all();
    end
}

fn read_loop(core: &Core, peer: &Peer) -> Option<Error> {
    let mut heartbeat = Heartbeat::new(core.options.heartbeat, Instant::now());
    // Messages are handed over a run at a time (see `Core::deliver`).
    let mut batch = VecDeque::new();
    // Whether to read before waiting for input: what arrived right behind the
    // handshake, or the rest of a run left in the buffer, makes the stream no
    // readier.
    let mut read_first = true;
    loop {
        // What an application thread read and found no room for goes first.
        batch.append(&mut peer.leftover.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            match core.deliver(peer, &mut batch) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    peer.channel.drop_for(&e);
                    return Some(e);
                }
            }
        }
        let ttl = peer.ping_ttl.swap(0, Ordering::Relaxed);
        if ttl > 0 {
            heartbeat.on_ping(ttl, Instant::now());
        }
        heartbeat.on_traffic(peer.channel.last_input());
        if heartbeat
            .poll_timeout()
            .is_some_and(|d| d <= Instant::now())
        {
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
            continue;
        }
        let deadline = heartbeat.poll_timeout();
        {
            let mut role = peer.role();
            if role.app {
                // An application thread reads: sleep until the heartbeat is due
                // or the lease runs out, then take the role back if it is no
                // longer in `recv`.
                let now = Instant::now();
                let until = deadline.map_or(now + LEASE, |d| d.min(now + LEASE));
                role = peer
                    .role_changed
                    .wait_timeout(role, until.saturating_duration_since(now))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if role.app && !role.app_in_recv && Instant::now() >= until {
                    role.app = false;
                }
                read_first = true;
                continue;
            }
            if hand_over(peer, &mut role) {
                read_first = true;
                continue;
            }
            role.conn_polling = !read_first;
        }
        if !read_first {
            wait_input(peer, deadline);
            let mut role = peer.role();
            role.conn_polling = false;
            if hand_over(peer, &mut role) {
                read_first = true;
                continue;
            }
        }
        let received = peer.channel.recv_batch_hooked(
            Wait::Never,
            |cmd| {
                if let Command::Ping { ttl, .. } = cmd {
                    heartbeat.on_ping(*ttl, Instant::now());
                }
                core.on_command(peer, cmd)
            },
            &mut batch,
        );
        match received {
            // Delivered at the top of the loop.
            Ok(()) => read_first = peer.channel.buffered(),
            Err(RecvFail::WouldBlock) => read_first = false,
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

/// Waits until the peer's channel has input, an application thread asks for
/// the role, or `deadline` passes.
fn wait_input(peer: &Peer, deadline: Option<Instant>) {
    let mut fds = [
        PollFd::from_borrowed_fd(peer.channel.fd(), PollFlags::IN),
        PollFd::from_borrowed_fd(peer.wake.fd(), PollFlags::IN),
    ];
    let timeout = deadline.map(|d| timespec(d.saturating_duration_since(Instant::now())));
    let _ = rustix::event::poll(&mut fds, timeout.as_ref());
}

fn timespec(d: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec::try_from(d).unwrap_or(rustix::event::Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

/// The connection thread gives the reading role to an application thread that
/// asked for it; true if it did.
fn hand_over(peer: &Peer, role: &mut ReadRole) -> bool {
    if !role.wanted {
        return false;
    }
    peer.wake.drain();
    role.wanted = false;
    role.app = true;
    peer.role_changed.notify_all();
    true
}

/// What [`read_direct`] came to.
pub(crate) enum Direct {
    /// It queued messages (or found the queues changed): look again.
    Again,
    /// `wait` ran out.
    TimedOut,
    /// The socket is closing.
    Closing,
    /// It cannot read this peer now: wait for the connection thread as usual.
    Fallback,
}

/// An application thread in `recv`, with nothing queued and one peer, reads the
/// peer's channel itself instead of waiting for its connection thread to hand
/// messages over: that hand-over took two context switches per message, which
/// made a PAIR round trip four times a bare channel's when both ends share a
/// core. Messages go through `Core::admit` as the connection thread's do; what
/// finds no room is left for the connection thread, which waits for room.
///
/// Called without the socket's lock, by one application thread at a time.
pub(crate) fn read_direct(core: &Core, peer: &Peer, wait: Wait) -> Direct {
    {
        let mut role = peer.role();
        if !role.app {
            if role.conn_done || !role.conn_polling {
                // Reading or delivering (a message is on its way), or gone.
                return Direct::Fallback;
            }
            role.wanted = true;
            peer.wake.wake();
            while !role.app && role.wanted && !role.conn_done {
                role = peer
                    .role_changed
                    .wait(role)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if !role.app {
                role.wanted = false;
                return Direct::Fallback;
            }
        }
        role.app_in_recv = true;
    }
    let outcome = read_as_app(core, peer, wait);
    let mut role = peer.role();
    role.app_in_recv = false;
    if !matches!(outcome, Direct::Again | Direct::TimedOut) {
        // Closing, the stream ended, or a leftover: the connection thread
        // takes over.
        role.app = false;
        peer.role_changed.notify_all();
    }
    outcome
}

fn read_as_app(core: &Core, peer: &Peer, wait: Wait) -> Direct {
    let mut batch = VecDeque::new();
    let mut read_first = peer.channel.buffered();
    loop {
        if read_first {
            read_first = false;
        } else if let Some(outcome) = wait_input_as_app(core, peer, wait) {
            return outcome;
        }
        let received = peer.channel.recv_batch_hooked(
            Wait::Never,
            |cmd| {
                if let Command::Ping { ttl, .. } = cmd {
                    peer.ping_ttl.store(*ttl, Ordering::Relaxed);
                }
                // PUB and XPUB, which use commands, are never read here.
                Ok(())
            },
            &mut batch,
        );
        match received {
            Ok(()) => {
                if core.admit_direct(peer, &mut batch) {
                    return Direct::Again;
                }
                peer.leftover
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .append(&mut batch);
                return Direct::Fallback;
            }
            Err(RecvFail::WouldBlock) => {
                let passed = match wait {
                    Wait::Never => true,
                    Wait::Forever => false,
                    Wait::Until(d) => Instant::now() >= d,
                };
                if passed {
                    return Direct::TimedOut;
                }
            }
            // The end stays with the channel: the connection thread reads it
            // again and takes the peer out of service.
            Err(_) => return Direct::Fallback,
        }
    }
}

/// Waits, as `wait` allows, for input from the peer; returns what ends the
/// direct read instead, if something does.
fn wait_input_as_app(core: &Core, peer: &Peer, wait: Wait) -> Option<Direct> {
    let timeout = match wait {
        Wait::Forever => None,
        Wait::Never => Some(Duration::ZERO),
        Wait::Until(d) => Some(d.saturating_duration_since(Instant::now())),
    };
    let timeout = timeout.map(timespec);
    let mut fds = [
        PollFd::from_borrowed_fd(peer.channel.fd(), PollFlags::IN),
        PollFd::from_borrowed_fd(core.waker.fd(), PollFlags::IN),
        PollFd::from_borrowed_fd(core.app_wake.fd(), PollFlags::IN),
    ];
    let _ = rustix::event::poll(&mut fds, timeout.as_ref());
    if !fds[1].revents().is_empty() {
        return Some(Direct::Closing);
    }
    if !fds[2].revents().is_empty() {
        // Something changed elsewhere in the socket: look again.
        core.app_wake.drain();
        return Some(Direct::Again);
    }
    None
}

#[cfg(test)]
mod tests {
    use conduit_proto::SocketType;

    use crate::channel::{Channel, ChannelBuilder};
    use crate::socket::Socket;

    /// A socket of `kind` bound on loopback tcp, and a channel connected to it
    /// announcing `peer_kind`.
    fn connected(socket: Socket, peer_kind: SocketType) -> (Socket, Channel, String) {
        let endpoint = socket.bind("tcp://127.0.0.1:0").unwrap().to_string();
        let peer = ChannelBuilder::new()
            .socket_type(peer_kind)
            .connect(&endpoint)
            .unwrap();
        (socket, peer, endpoint)
    }

    fn text(msg: &conduit_proto::Message) -> String {
        String::from_utf8(msg.concat().to_vec()).unwrap()
    }

    /// Waits (without a time limit: the test harness has one) until `f` holds.
    fn until(f: impl Fn() -> bool) {
        while !f() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn an_application_waiting_in_recv_takes_over_reading_its_only_peer() {
        let (socket, peer, _) = connected(
            Socket::builder(SocketType::Pair).build().unwrap(),
            SocketType::Pair,
        );
        // A `recv` that finds the connection thread waiting for input asks it
        // for the role, and keeps it between calls; one that finds it busy
        // waits for it as before, and asks again next time.
        let mut held = false;
        for i in 0..20 {
            std::thread::scope(|s| {
                let ping = s.spawn(|| socket.recv().unwrap());
                until(|| {
                    let st = socket.core.lock();
                    st.app_reading || st.app_waiting > 0 || ping.is_finished()
                });
                peer.send(format!("ping {i}")).unwrap();
                assert_eq!(text(&ping.join().unwrap()), format!("ping {i}"));
            });
            held |= socket.core.lock().peers[0].peer.role().app;
            socket.send(format!("pong {i}")).unwrap();
            assert_eq!(text(&peer.recv().unwrap()), format!("pong {i}"));
        }
        assert!(held, "the application read the peer itself");
    }

    #[test]
    fn what_finds_no_room_is_delivered_later_in_order() {
        let (socket, peer, _) = connected(
            Socket::builder(SocketType::Pull)
                .recv_hwm(1)
                .build()
                .unwrap(),
            SocketType::Push,
        );
        peer.send("first").unwrap();
        assert_eq!(text(&socket.recv().unwrap()), "first");
        // A run of messages read at once by the application: one fits, the rest
        // go to the connection thread, which waits for room.
        for i in 0..50 {
            peer.send(format!("m{i}")).unwrap();
        }
        peer.flush().unwrap();
        for i in 0..50 {
            assert_eq!(text(&socket.recv().unwrap()), format!("m{i}"));
            assert!(socket.core.lock().peers[0].inbound.len() <= 1);
        }
    }

    #[test]
    fn the_connection_thread_takes_the_role_back_when_the_application_stops_reading() {
        let (socket, peer, _) = connected(
            Socket::builder(SocketType::Pair).build().unwrap(),
            SocketType::Pair,
        );
        peer.send("one").unwrap();
        assert_eq!(text(&socket.recv().unwrap()), "one");
        // The application no longer reads; the peer sends its last message and
        // leaves. The connection thread reads both, and takes the peer out of
        // service...
        peer.send("last").unwrap();
        peer.close().unwrap();
        until(|| socket.core.lock().peers.iter().all(|s| s.gone));
        // ...and what it sent stays readable.
        assert_eq!(text(&socket.recv().unwrap()), "last");
        assert!(socket.core.lock().peers.is_empty());
    }

    #[test]
    fn a_second_peer_wakes_an_application_reading_the_first() {
        let (socket, first, endpoint) = connected(
            Socket::builder(SocketType::Pull).build().unwrap(),
            SocketType::Push,
        );
        first.send("a").unwrap();
        assert_eq!(text(&socket.recv().unwrap()), "a");
        std::thread::scope(|s| {
            // Reads `first` itself, which will send nothing more.
            let receiver = s.spawn(|| text(&socket.recv().unwrap()));
            until(|| socket.core.lock().app_reading);
            let second = ChannelBuilder::new()
                .socket_type(SocketType::Push)
                .connect(&endpoint)
                .unwrap();
            second.send("b").unwrap();
            assert_eq!(receiver.join().unwrap(), "b");
            drop(first);
        });
    }
}
