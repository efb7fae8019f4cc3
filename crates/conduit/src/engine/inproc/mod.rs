//! `inproc://`: sockets of one process linked without the kernel.
//!
//! A link is two [`Pipe`]s, one per direction. Each socket has the other as
//! a peer like any other, with the pipe it sends into as its outlet; its
//! reactor holds a [`Half`], the pipe it receives from, which it reads when
//! the sender rings as it reads a connection when epoll says so. Messages
//! move as they are: no encoding, no copy, and no system call while the
//! receiver is busy.
//!
//! As in libzmq: connecting may come before binding (the link is made when
//! the name is bound); a name is bound by one socket at a time; no security
//! mechanism applies, the peers being the process's own; and a link buffers
//! the sender's send high-water mark (in the pipe) plus the receiver's
//! receive high-water mark (in the socket). As with conduit's other
//! transports, a connecting socket links again when its peer goes away and
//! another socket binds the name.
//!
//! Locks: linking takes one socket's state lock at a time, and the registry
//! lock with no other held.

mod pipe;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use conduit_proto::{
    Greeting, IDENTITY, Message, PeerInfo, Properties, ProtocolError, SOCKET_TYPE,
};

use self::pipe::Took;
pub(crate) use self::pipe::{LinkId, Pipe};
use super::outlet::Outlet;
use super::reactor::Task;
use crate::error::Error;
use crate::socket::core::Core;
use crate::socket::events::SocketEvent;

/// Names bound, and sockets waiting for a name to be bound.
#[derive(Default)]
struct Registry {
    bound: HashMap<String, Weak<Core>>,
    pending: HashMap<String, Vec<Weak<Core>>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn endpoint(name: &str) -> String {
    format!("inproc://{name}")
}

/// Binds `name` for `core`, linking the sockets that connected to it first.
pub(crate) fn bind(core: &Arc<Core>, name: &str) -> Result<(), Error> {
    let waiting = {
        let mut reg = registry();
        if reg.bound.get(name).and_then(Weak::upgrade).is_some() {
            return Err(Error::io(
                format!(
                    "cannot bind {}: another socket has bound it",
                    endpoint(name)
                ),
                io::ErrorKind::AddrInUse.into(),
            ));
        }
        reg.bound.insert(name.to_owned(), Arc::downgrade(core));
        reg.pending.remove(name).unwrap_or_default()
    };
    for connecter in waiting.iter().filter_map(Weak::upgrade) {
        if let Err(error) = link(&connecter, core, name) {
            connecter.emit(SocketEvent::HandshakeFailed {
                link: endpoint(name),
                error,
            });
        }
    }
    Ok(())
}

/// Links `core` to the socket bound at `name`, or waits for one to bind it.
pub(crate) fn connect(core: &Arc<Core>, name: &str) -> Result<(), Error> {
    match binder_or_wait(core, name, None) {
        Some(binder) => link(core, &binder, name),
        None => Ok(()),
    }
}

/// After its peer `old` went away: links a socket still connected to `name`
/// again, to the socket that binds it now or the next one to. Not to `old`
/// if it still binds the name: it let us go on purpose (a ROUTER handing our
/// identity over), and linking again at once would only repeat that.
/// Failures are events, as for any reconnection.
pub(crate) fn relink(core: &Arc<Core>, name: &str, old: &Weak<Core>) {
    let wanted = {
        let st = core.lock();
        !st.closing && st.connected.iter().any(|e| *e == endpoint(name))
    };
    if !wanted {
        return;
    }
    if let Some(binder) = binder_or_wait(core, name, Some(old)) {
        if let Err(error) = link(core, &binder, name) {
            core.emit(SocketEvent::HandshakeFailed {
                link: endpoint(name),
                error,
            });
        }
    }
}

/// The socket bound at `name` (unless it is `not`), or `None` with `core`
/// waiting for the next socket to bind it.
fn binder_or_wait(core: &Arc<Core>, name: &str, not: Option<&Weak<Core>>) -> Option<Arc<Core>> {
    let mut reg = registry();
    match reg.bound.get(name).and_then(Weak::upgrade) {
        Some(binder) if not.is_none_or(|n| n.as_ptr() != Arc::as_ptr(&binder)) => Some(binder),
        _ => {
            let waiting = reg.pending.entry(name.to_owned()).or_default();
            if !waiting.iter().any(|w| w.as_ptr() == Arc::as_ptr(core)) {
                waiting.push(Arc::downgrade(core));
            }
            None
        }
    }
}

/// `core` neither binds `name` nor waits for it to be bound any more
/// (`unbind`, `disconnect`).
pub(crate) fn forget_name(core: &Core, name: &str) {
    let mut reg = registry();
    if reg
        .bound
        .get(name)
        .is_some_and(|w| std::ptr::eq(w.as_ptr(), core))
    {
        reg.bound.remove(name);
    }
    if let Some(waiting) = reg.pending.get_mut(name) {
        waiting.retain(|w| !std::ptr::eq(w.as_ptr(), core) && w.strong_count() > 0);
        if waiting.is_empty() {
            reg.pending.remove(name);
        }
    }
}

/// `core` closes: it binds nothing and waits for nothing from now on.
pub(crate) fn forget(core: &Core) {
    let mut reg = registry();
    reg.bound.retain(|_, w| !std::ptr::eq(w.as_ptr(), core));
    reg.pending.retain(|_, waiting| {
        waiting.retain(|w| !std::ptr::eq(w.as_ptr(), core) && w.strong_count() > 0);
        !waiting.is_empty()
    });
}

/// Makes a link between `connecter` and `binder`: a peer in each socket at
/// once, so that the first send finds it, and a half for each reactor.
fn link(connecter: &Arc<Core>, binder: &Arc<Core>, name: &str) -> Result<(), Error> {
    if Arc::ptr_eq(connecter, binder) {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint(name),
            reason: "a socket cannot connect to a name it bound itself".into(),
        });
    }
    if !connecter.kind.is_compatible_with(binder.kind) {
        return Err(Error::Protocol(ProtocolError::IncompatibleSocketType {
            ours: connecter.kind,
            peer: binder.kind,
        }));
    }
    let id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    let to_binder = Pipe::new(
        id,
        connecter.options.channel.sndhwm,
        Arc::downgrade(connecter),
    );
    let to_connecter = Pipe::new(id, binder.options.channel.sndhwm, Arc::downgrade(binder));
    let c_peer = connecter
        .add_peer(info_of(binder), Outlet::Inproc(to_binder.clone()))
        .map_err(Error::PeerRejected)?;
    let b_peer = match binder.add_peer(info_of(connecter), Outlet::Inproc(to_connecter.clone())) {
        Ok(peer) => peer,
        Err(reason) => {
            connecter.remove_peer(c_peer);
            return Err(Error::PeerRejected(reason));
        }
    };
    let halves = [
        (
            connecter,
            c_peer,
            to_connecter.clone(),
            to_binder.clone(),
            Side::Connected,
            binder,
        ),
        (
            binder,
            b_peer,
            to_binder,
            to_connecter,
            Side::Bound,
            connecter,
        ),
    ];
    for (core, peer_id, rx, tx, side, other) in halves {
        let link = endpoint(name);
        core.emit(SocketEvent::Connected { link: link.clone() });
        core.emit(SocketEvent::Ready {
            link: link.clone(),
            peer: other.kind,
            identity: other.options.channel.local.identity.clone(),
            user_id: None,
        });
        core.doorbell.submit(Task::InprocAttach(Box::new(Half {
            link: id,
            core: core.clone(),
            peer_id,
            rx,
            tx,
            held: VecDeque::new(),
            paused: false,
            endpoint: link,
            side,
            peer: Arc::downgrade(other),
        })));
    }
    Ok(())
}

/// What a socket's peers see of a socket at the other end of a link: what a
/// handshake would have told them.
fn info_of(core: &Core) -> PeerInfo {
    let identity: Bytes = core.options.channel.local.identity.clone();
    let mut properties = Properties::new();
    let _ = properties.insert(SOCKET_TYPE, core.kind.as_str().as_bytes().to_vec());
    if !identity.is_empty() {
        let _ = properties.insert(IDENTITY, identity.clone());
    }
    PeerInfo {
        socket_type: core.kind,
        identity,
        properties,
        greeting: Greeting { major: 3, minor: 1 },
        user_id: None,
    }
}

/// Which end of the name a socket is at: what `unbind` and `disconnect` close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Bound,
    Connected,
}

/// Takes at most this many runs from a pipe per turn, so that a sender that
/// never pauses cannot keep the reactor from its other work.
const DRAIN_BUDGET: usize = 16;

/// The end of a link a socket's reactor holds: the pipe it receives from, and
/// the one it sends into (to close it).
#[derive(Debug)]
pub(crate) struct Half {
    pub(crate) link: LinkId,
    pub(crate) core: Arc<Core>,
    pub(crate) peer_id: u64,
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    /// Taken from `rx`, not yet admitted: the socket's queue for the peer is
    /// full.
    held: VecDeque<Message>,
    paused: bool,
    /// `inproc://name`, as the socket's events and endpoint lists say it.
    pub(crate) endpoint: String,
    pub(crate) side: Side,
    /// The socket at the other end.
    pub(crate) peer: Weak<Core>,
}

/// What a turn at a half's pipe came to.
#[derive(Debug)]
pub(crate) enum Drained {
    /// Everything is admitted; the sender rings when it sends again.
    Waiting,
    /// The socket has no room for the peer's messages: resumed when it has.
    Paused,
    /// The budget ran out with more to take.
    More,
    /// The peer closed its end and everything it sent is admitted.
    Ended,
    /// The socket refused the peer (a subscriber past its limits).
    Failed(Error),
}

impl Half {
    /// The reactor holds this end from now on: rings come to it.
    pub(crate) fn attach(&self) {
        self.rx.attach(self.core.doorbell.clone());
    }

    /// Admits what the peer sent, as far as the socket has room.
    pub(crate) fn drain(&mut self) -> Drained {
        if self.paused {
            return Drained::Paused;
        }
        for _ in 0..DRAIN_BUDGET {
            if !self.held.is_empty() {
                let before = self.held.len();
                let delivered = self.core.deliver(self.peer_id, &mut self.held);
                self.rx.admitted(before - self.held.len());
                match delivered {
                    Ok(true) => {}
                    Ok(false) => {
                        self.paused = true;
                        return Drained::Paused;
                    }
                    Err(e) => return Drained::Failed(e),
                }
            }
            if self.rx.take(&mut self.held) == Took::Ended {
                return Drained::Ended;
            }
            if self.held.is_empty() {
                return Drained::Waiting;
            }
        }
        Drained::More
    }

    /// The socket has room for the peer's messages again.
    pub(crate) fn resume(&mut self) -> Drained {
        self.paused = false;
        self.drain()
    }

    /// Closes this end: the peer's reactor ends its own once it has taken
    /// what we sent; what the peer sent and we did not take is dropped.
    pub(crate) fn close(&self) {
        self.tx.close_sender();
        self.rx.close_receiver();
    }
}

/// A half dropped without `close` (its socket closed before its reactor took
/// it) still ends the link, so that the peer does not keep it for ever.
impl Drop for Half {
    fn drop(&mut self) {
        self.close();
    }
}
