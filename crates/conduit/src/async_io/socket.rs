//! [`AsyncSocket`]: a [`Socket`] whose waits are tokio futures.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use conduit_proto::{Message, SocketType};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{need_runtime, register, wait_error};
use crate::endpoint::{Endpoint, ToEndpoint};
use crate::error::{Error, RecvError, SendError, SendTimeoutError, TryRecvError, TrySendError};
use crate::socket::Socket;

/// A [`Socket`] for async code on tokio: `recv().await`, `send(..).await`, a
/// [`Stream`](futures_core::Stream) of received messages and a
/// [`Sink`](futures_sink::Sink) of messages to send.
///
/// It is the same socket, not a copy: every socket type, the same options
/// (set on the [`SocketBuilder`](crate::SocketBuilder)), the same errors.
/// Blocking code may keep a clone of the [`Socket`] and use it meanwhile, and
/// [`into_inner`](Self::into_inner) gives it back. No thread is started for
/// it: the socket's I/O thread does its I/O, and tokio's reactor watches its
/// readiness descriptors. It works on the current-thread and the multi-thread
/// runtime, and may be shared between tasks (`Arc<AsyncSocket>`): every method
/// but the `Stream` and `Sink` ones takes `&self`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use conduit::{AsyncSocket, Socket, SocketType};
///
/// let rep = AsyncSocket::new(Socket::new(SocketType::Rep)?)?;
/// let endpoint = rep.bind("tcp://127.0.0.1:*")?;
/// let req = Socket::new(SocketType::Req)?.into_async()?;
/// req.connect(&endpoint)?;
/// req.send("ping").await?;
/// assert_eq!(rep.recv().await?.concat(), "ping");
/// rep.send("pong").await?;
/// assert_eq!(req.recv().await?.concat(), "pong");
/// # Ok(())
/// # }
/// ```
///
/// Closing: [`close`](Self::close) waits for queued messages (up to the
/// linger time) off the runtime's threads. Dropping the last handle to a socket
/// closes it where it is dropped, which blocks that thread for as long as the
/// linger time allows: set a [`linger`](crate::SocketBuilder::linger), or
/// close it.
pub struct AsyncSocket {
    shared: Arc<Shared>,
    /// The [`Stream`](futures_core::Stream)'s wait for a message, when one is
    /// under way.
    next: Option<Wait>,
    /// The [`Sink`](futures_sink::Sink)'s message not yet sent, and its wait.
    sink: SinkState,
}

impl std::fmt::Debug for AsyncSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSocket")
            .field("socket", &self.shared.socket)
            .field("sink", &self.sink)
            .finish_non_exhaustive()
    }
}

/// A boxed wait on a readiness descriptor, owning what it needs.
type Wait = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + Sync>>;

#[derive(Default)]
struct SinkState {
    message: Option<Message>,
    wait: Option<Wait>,
    waiting: Option<Waiting>,
}

impl std::fmt::Debug for SinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkState")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

/// What the socket and its waits share.
#[derive(Debug)]
struct Shared {
    socket: Socket,
    /// The socket's receive readiness eventfd, duplicated: tokio's epoll set
    /// keys on the descriptor number, so two adapters over one socket each
    /// need their own.
    readable: AsyncFd<OwnedFd>,
    /// The socket's send readiness eventfd, duplicated likewise.
    writable: AsyncFd<OwnedFd>,
    /// The socket's reactor (its epoll set), duplicated likewise: when it is
    /// readable the task steps the reactor itself, as a blocking `recv`
    /// does, so a message is read by the task that wants it rather than by
    /// the I/O thread, which would then have to wake tokio (a thread switch
    /// per message).
    reactor: AsyncFd<OwnedFd>,
    /// Held by the one wait (of any task, receive or send) that watches
    /// these descriptors through tokio's reader slots (see [`first_ready`]).
    slot: AtomicBool,
}

impl Shared {
    /// After a `try_recv` found nothing: waits until the receive descriptor
    /// was signalled since it was last cleared (and clears it unless a
    /// message is queued), or until the reactor had I/O to do and was
    /// stepped. `stuck` (see [`Look::Empty`]) waits a moment instead.
    async fn wait_readable(self: Arc<Self>, stuck: bool) -> Result<(), Error> {
        self.wait_readable_ref(stuck).await
    }

    async fn wait_readable_ref(&self, stuck: bool) -> Result<(), Error> {
        if stuck {
            // The queue holds messages try_recv does not give (a REQ's queue
            // with only another peer's): the descriptor stays readable with
            // no new edge to come, so look again shortly instead, after
            // reading what arrived meanwhile (try_recv does not).
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.socket.step_woken();
            return Ok(());
        }
        // Read what has arrived, on this task, unless the reactor's
        // readiness in tokio shows all there is (see `step_if_owed`): the
        // `try_recv` before this wait took what was queued without a step.
        self.socket.step_if_owed();
        // Counted as a waiter (so that what another thread queues signals
        // the descriptor) only while waiting: what this task queues itself,
        // it sees without a signal.
        let watch = RecvWatch::new(&self.socket);
        if watch.had_message {
            return Ok(());
        }
        match first_ready(&self.slot, &self.readable, &self.reactor).await {
            Either::First(guard) => {
                let mut guard = guard.map_err(wait_error)?;
                // Queued now: the caller's next try_recv takes it. Otherwise
                // clear; a message delivered after this look comes with a
                // new edge, which tokio keeps (its readiness ticks), so
                // nothing is lost.
                if !self.socket.has_message() {
                    guard.clear_ready();
                }
            }
            Either::Second(guard) => {
                // I/O to do: clear (an event after the step below makes a
                // new edge), stop waiting, and step the reactor (or read its
                // only connection, if that is all it can be). The caller's
                // try_recv looks at what it brought.
                guard.map_err(wait_error)?.clear_ready();
                drop(watch);
                self.socket.step_woken();
            }
        }
        Ok(())
    }

    /// Waits for a change that may let a send through. The caller counts
    /// itself as a waiter ([`Waiting`]) before its last `try_send`.
    async fn wait_writable(self: Arc<Self>) -> Result<(), Error> {
        // Write what the kernel now takes, on this task (the `try_send`
        // before this wait has if this task leases the reactor already).
        self.socket.step_if_owed();
        // Every signal of the send eventfd is a write, so a new edge; its
        // counter is never read here (see `Socket::count_send_waiter`).
        // Reactor readiness: room may have come once it is stepped.
        let guard = match first_ready(&self.slot, &self.writable, &self.reactor).await {
            Either::First(g) | Either::Second(g) => g,
        };
        guard.map_err(wait_error)?.clear_ready();
        Ok(())
    }

    /// Takes a queued message. No step of the reactor: the wait that
    /// follows an empty look steps it when there is anything to read.
    fn try_recv(&self) -> Look {
        let mut stuck = false;
        match self.socket.try_recv_queued(&mut stuck) {
            Ok(m) => Look::Got(Ok(m)),
            Err(TryRecvError::Empty) => Look::Empty { stuck },
            Err(TryRecvError::Closed) => Look::Got(Err(RecvError::Closed)),
            Err(TryRecvError::Failed(e)) => Look::Got(Err(RecvError::Failed(e))),
        }
    }

    /// One round of a send: sent, failed, or handed back for a wait. The
    /// first time it finds the socket full it counts itself a waiter and
    /// tries again, so that no change between the two goes unsignalled.
    fn try_send(
        self: &Arc<Self>,
        message: Message,
        waiting: &mut Option<Waiting>,
    ) -> Result<Result<(), SendError>, Message> {
        let mut message = message;
        loop {
            match self.socket.try_send(message) {
                Ok(()) => {
                    *waiting = None;
                    return Ok(Ok(()));
                }
                Err(TrySendError::Failed(e)) => {
                    *waiting = None;
                    return Ok(Err(e));
                }
                Err(TrySendError::Full(m)) => message = m,
            }
            if waiting.is_some() {
                return Err(message);
            }
            *waiting = Some(Waiting::new(self.clone()));
        }
    }
}

/// What a look for a message found.
enum Look {
    Got(Result<Message, RecvError>),
    /// Nothing for us. `stuck`: messages are queued all the same, ones the
    /// socket type does not give (a REQ's from a peer it did not ask). The
    /// receive descriptor stays readable for them with no new edge to come,
    /// so the wait cannot be on it.
    Empty {
        stuck: bool,
    },
}

enum Either<A, B> {
    First(A),
    Second(B),
}

/// A readiness guard of one of the socket's descriptors.
type Ready<'a> = std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'a, OwnedFd>>;

/// Waits until either descriptor is readable (the first when both are).
///
/// The one wait that holds the socket's [`Shared::slot`] waits through
/// `poll_read_ready`: tokio's reader slot per descriptor, a readiness check
/// and, while not ready, a lock to store the waker, nothing to undo when the
/// wait ends. That slot keeps only the last waker, so every other wait at the
/// same time (several tasks share a socket) goes through `readable()`,
/// tokio's list of waiters: a lock on every poll and another to leave the
/// list. A readiness event wakes the slot and the whole list, so neither kind
/// of waiter misses it; both hand back the same guard, whose `clear_ready`
/// clears only readiness of the tick it saw.
fn first_ready<'a>(
    slot: &'a AtomicBool,
    a: &'a AsyncFd<OwnedFd>,
    b: &'a AsyncFd<OwnedFd>,
) -> FirstReady<'a> {
    FirstReady {
        a,
        b,
        how: How::Start(slot),
    }
}

struct FirstReady<'a> {
    a: &'a AsyncFd<OwnedFd>,
    b: &'a AsyncFd<OwnedFd>,
    how: How<'a>,
}

enum How<'a> {
    /// Not polled yet: the slot is claimed (or not) on the first poll, so a
    /// future that is never polled holds nothing.
    Start(&'a AtomicBool),
    /// This wait holds the reader slots until it completes or is dropped.
    Slot {
        _claim: SlotClaim<'a>,
    },
    /// Another wait holds them: tokio's waiter lists (boxed: their futures
    /// are not `Unpin`, and this is the uncommon case).
    Listed(ListedWait<'a>),
    Done,
}

type ListedWait<'a> =
    Pin<Box<dyn Future<Output = Either<Ready<'a>, Ready<'a>>> + Send + Sync + 'a>>;

impl<'a> Future for FirstReady<'a> {
    type Output = Either<Ready<'a>, Ready<'a>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.how {
                How::Start(slot) => {
                    this.how = match SlotClaim::take(slot) {
                        Some(claim) => How::Slot { _claim: claim },
                        None => How::Listed(Box::pin(first_ready_listed(this.a, this.b))),
                    };
                }
                How::Slot { .. } => {
                    let r = if let Poll::Ready(r) = this.a.poll_read_ready(cx) {
                        Either::First(r)
                    } else if let Poll::Ready(r) = this.b.poll_read_ready(cx) {
                        Either::Second(r)
                    } else {
                        return Poll::Pending;
                    };
                    // Released now, not when the caller drops this future:
                    // its next wait may claim the slot again.
                    this.how = How::Done;
                    return Poll::Ready(r);
                }
                How::Listed(wait) => {
                    let r = ready!(wait.as_mut().poll(cx));
                    this.how = How::Done;
                    return Poll::Ready(r);
                }
                How::Done => panic!("FirstReady polled after it completed"),
            }
        }
    }
}

/// The claim on a socket's reader slots; released when dropped.
struct SlotClaim<'a>(&'a AtomicBool);

impl<'a> SlotClaim<'a> {
    fn take(slot: &'a AtomicBool) -> Option<SlotClaim<'a>> {
        slot.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SlotClaim(slot))
    }
}

impl Drop for SlotClaim<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// [`first_ready`] for a wait that does not hold the slots: through
/// `readable()`, which keeps a waker per waiting task.
async fn first_ready_listed<'a>(
    a: &'a AsyncFd<OwnedFd>,
    b: &'a AsyncFd<OwnedFd>,
) -> Either<Ready<'a>, Ready<'a>> {
    let mut fa = std::pin::pin!(a.readable());
    let mut fb = std::pin::pin!(b.readable());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = fa.as_mut().poll(cx) {
            return Poll::Ready(Either::First(r));
        }
        if let Poll::Ready(r) = fb.as_mut().poll(cx) {
            return Poll::Ready(Either::Second(r));
        }
        Poll::Pending
    })
    .await
}

/// Counts a task as waiting on the receive readiness descriptor while it
/// lives (also when the wait is cancelled).
struct RecvWatch<'a> {
    socket: &'a Socket,
    /// A message was queued (or the socket closed) when the wait began.
    had_message: bool,
}

impl<'a> RecvWatch<'a> {
    fn new(socket: &'a Socket) -> RecvWatch<'a> {
        RecvWatch {
            socket,
            had_message: socket.watch_recv(),
        }
    }
}

impl Drop for RecvWatch<'_> {
    fn drop(&mut self) {
        self.socket.unwatch_recv();
    }
}

/// Counts a sender as waiting for room while it lives.
struct Waiting(Arc<Shared>);

impl Waiting {
    fn new(shared: Arc<Shared>) -> Waiting {
        shared.socket.count_send_waiter(true);
        Waiting(shared)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.socket.count_send_waiter(false);
    }
}

impl AsyncSocket {
    /// Makes `socket` async. Call it inside a tokio runtime (with I/O enabled).
    /// A task waiting on the socket steps its reactor itself (as a blocking
    /// `recv` does on its thread); the socket's I/O thread takes over while no
    /// task or thread waits on it.
    ///
    /// Outside a runtime it fails; in a runtime built without I/O (no
    /// `enable_io`/`enable_all`) tokio panics.
    pub fn new(socket: Socket) -> Result<AsyncSocket, Error> {
        need_runtime()?;
        let dup = |fd: std::os::fd::BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .map_err(|e| Error::io("cannot duplicate the readiness descriptor", e))
        };
        let (recv_fd, reactor_fd) = socket.async_fds();
        let recv_fd = dup(recv_fd)?;
        let reactor_fd = dup(reactor_fd)?;
        let send_fd = dup(socket.send_fd())?;
        let readable = register(recv_fd, Interest::READABLE)?;
        let writable = register(send_fd, Interest::READABLE)?;
        let reactor = register(reactor_fd, Interest::READABLE)?;
        Ok(AsyncSocket {
            shared: Arc::new(Shared {
                socket,
                readable,
                writable,
                reactor,
                slot: AtomicBool::new(false),
            }),
            next: None,
            sink: SinkState::default(),
        })
    }

    /// The blocking socket underneath (a handle to the same socket).
    pub fn get_ref(&self) -> &Socket {
        &self.shared.socket
    }

    /// The blocking socket back. A message the [`Sink`](futures_sink::Sink)
    /// had not sent yet is dropped: flush first.
    pub fn into_inner(self) -> Socket {
        self.shared.socket.clone()
    }

    /// The socket's type.
    pub fn socket_type(&self) -> SocketType {
        self.shared.socket.socket_type()
    }

    /// As [`Socket::bind`]; it does not wait.
    pub fn bind(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<Endpoint, Error> {
        self.shared.socket.bind(endpoint)
    }

    /// As [`Socket::connect`]; it does not wait.
    pub fn connect(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<(), Error> {
        self.shared.socket.connect(endpoint)
    }

    /// As [`Socket::unbind`].
    pub fn unbind(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<(), Error> {
        self.shared.socket.unbind(endpoint)
    }

    /// As [`Socket::disconnect`].
    pub fn disconnect(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<(), Error> {
        self.shared.socket.disconnect(endpoint)
    }

    /// As [`Socket::subscribe`].
    pub fn subscribe(&self, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        self.shared.socket.subscribe(topic)
    }

    /// As [`Socket::unsubscribe`].
    pub fn unsubscribe(&self, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        self.shared.socket.unsubscribe(topic)
    }

    /// As [`Socket::peer_count`].
    pub fn peer_count(&self) -> usize {
        self.shared.socket.peer_count()
    }

    /// Receives the next message as the socket type does, waiting for one.
    /// [`RecvError::Closed`] means the socket was closed.
    ///
    /// Cancel safety: safe. A message is taken only in the poll that returns
    /// it, so dropping the future (a `select!` branch that lost, a
    /// `timeout`) loses nothing: the message stays queued for the next call.
    pub async fn recv(&self) -> Result<Message, RecvError> {
        loop {
            match self.shared.try_recv() {
                Look::Got(r) => return r,
                Look::Empty { stuck } => self.shared.wait_readable_ref(stuck).await?,
            }
        }
    }

    /// Receives a message only if one is there already (as
    /// [`Socket::try_recv`]).
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        self.shared.socket.try_recv()
    }

    /// Sends a message as the socket type does, waiting while the peers that
    /// would take it are at their high-water mark (or there are none yet).
    ///
    /// Cancel safety: the returned [`SocketSend`] holds the message until it
    /// is sent, and never sends part of it. If it completes, the message was
    /// sent or came back in the [`SendError`]; if it is dropped before, the
    /// message was not sent. To get it back rather than drop it, poll the
    /// future by reference (`select!` on `&mut send`) and then call
    /// [`SocketSend::take_message`], or use [`send_timeout`](Self::send_timeout).
    pub fn send(&self, message: impl Into<Message>) -> SocketSend<'_> {
        SocketSend {
            socket: self,
            message: Some(message.into()),
            wait: None,
            waiting: None,
        }
    }

    /// Sends a message, waiting at most `timeout`; on timeout the message
    /// comes back in [`SendTimeoutError::Timeout`].
    ///
    /// Cancel safety: as [`send`](Self::send)'s future when dropped: the
    /// message was sent, or was not and is dropped.
    pub async fn send_timeout(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        let mut send = self.send(message);
        match tokio::time::timeout(timeout, &mut send).await {
            Ok(r) => r.map_err(SendTimeoutError::Failed),
            Err(_) => match send.take_message() {
                Some(m) => Err(SendTimeoutError::Timeout(m)),
                // Sent in the very poll that the timer beat.
                None => Ok(()),
            },
        }
    }

    /// Sends a message only if that needs no waiting (as [`Socket::try_send`]).
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        self.shared.socket.try_send(message)
    }

    /// Closes the socket as [`Socket::close`] does, waiting for queued messages
    /// on tokio's blocking pool rather than on the runtime's thread. Other
    /// handles to the socket see it closed.
    pub async fn close(self) -> Result<(), Error> {
        let socket = self.shared.socket.clone();
        drop(self);
        tokio::task::spawn_blocking(move || socket.close())
            .await
            .map_err(|e| Error::io("closing the socket failed", std::io::Error::other(e)))?
    }
}

impl Socket {
    /// This socket as an [`AsyncSocket`] (feature `tokio`); see
    /// [`AsyncSocket::new`].
    pub fn into_async(self) -> Result<AsyncSocket, Error> {
        AsyncSocket::new(self)
    }
}

/// The future of [`AsyncSocket::send`]: sends one message.
///
/// It is `Unpin`, so it can be polled by reference and asked for its message
/// afterwards:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use conduit::{Socket, SocketType};
///
/// // A PUSH with no peer: sending waits.
/// let push = Socket::new(SocketType::Push)?.into_async()?;
/// let mut send = push.send("job");
/// tokio::select! {
///     r = &mut send => r?,
///     _ = tokio::time::sleep(Duration::from_millis(10)) => {}
/// }
/// assert_eq!(send.take_message().unwrap().concat(), "job");
/// # Ok(())
/// # }
/// ```
#[must_use = "a send does nothing unless awaited"]
pub struct SocketSend<'a> {
    socket: &'a AsyncSocket,
    message: Option<Message>,
    wait: Option<Wait>,
    waiting: Option<Waiting>,
}

impl std::fmt::Debug for SocketSend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketSend")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl SocketSend<'_> {
    /// The message, if it has not been sent (nor handed back in an error):
    /// what a cancelled send gives back. The future then has nothing to send
    /// and completes at once.
    pub fn take_message(&mut self) -> Option<Message> {
        self.wait = None;
        self.waiting = None;
        self.message.take()
    }
}

impl Future for SocketSend<'_> {
    type Output = Result<(), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        poll_send(
            &this.socket.shared,
            cx,
            &mut this.message,
            &mut this.wait,
            &mut this.waiting,
        )
    }
}

/// Sends `message` (if any), waiting on `wait` between tries. Leaves
/// `message` in place while it waits.
fn poll_send(
    shared: &Arc<Shared>,
    cx: &mut Context<'_>,
    message: &mut Option<Message>,
    wait: &mut Option<Wait>,
    waiting: &mut Option<Waiting>,
) -> Poll<Result<(), SendError>> {
    loop {
        if let Some(w) = wait {
            let r = ready!(w.as_mut().poll(cx));
            *wait = None;
            if let Err(error) = r {
                *waiting = None;
                return match message.take() {
                    Some(message) => Poll::Ready(Err(SendError { message, error })),
                    None => Poll::Ready(Ok(())),
                };
            }
        }
        let Some(m) = message.take() else {
            return Poll::Ready(Ok(()));
        };
        match shared.try_send(m, waiting) {
            Ok(r) => return Poll::Ready(r),
            Err(m) => {
                *message = Some(m);
                *wait = Some(Box::pin(shared.clone().wait_writable()));
            }
        }
    }
}

/// Received messages, until the socket is closed (`None`); an error is an
/// item (a receive that cannot work, such as on a PUSH, fails every time).
/// Cancel safe, as [`AsyncSocket::recv`].
impl futures_core::Stream for AsyncSocket {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(w) = &mut this.next {
                let r = ready!(w.as_mut().poll(cx));
                this.next = None;
                if let Err(e) = r {
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match this.shared.try_recv() {
                Look::Got(Ok(m)) => return Poll::Ready(Some(Ok(m))),
                Look::Got(Err(RecvError::Closed)) => return Poll::Ready(None),
                Look::Got(Err(RecvError::Failed(e))) => return Poll::Ready(Some(Err(e))),
                Look::Empty { stuck } => {
                    this.next = Some(Box::pin(this.shared.clone().wait_readable(stuck)));
                }
            }
        }
    }
}

/// Sends messages as [`AsyncSocket::send`] does, one at a time: `poll_ready`
/// waits until the previous one is sent. A message accepted by `start_send`
/// and not yet flushed is dropped with the socket; a failed one comes back in
/// the [`SendError`].
impl<M: Into<Message>> futures_sink::Sink<M> for AsyncSocket {
    type Error = SendError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_flush_sink(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<(), SendError> {
        let this = self.get_mut();
        debug_assert!(this.sink.message.is_none(), "start_send without poll_ready");
        let message = item.into();
        // Most sends need no wait: try at once, so a flush is not needed for
        // the message to go out.
        match this.shared.try_send(message, &mut this.sink.waiting) {
            Ok(r) => r,
            Err(m) => {
                this.sink.message = Some(m);
                Ok(())
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_flush_sink(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.poll_flush_sink(cx)
    }
}

impl AsyncSocket {
    fn poll_flush_sink(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let this = self.get_mut();
        let s = &mut this.sink;
        if s.message.is_none() {
            return Poll::Ready(Ok(()));
        }
        if s.wait.is_none() {
            s.wait = Some(Box::pin(this.shared.clone().wait_writable()));
        }
        poll_send(
            &this.shared,
            cx,
            &mut s.message,
            &mut s.wait,
            &mut s.waiting,
        )
    }
}
