//! The receive path: read big chunks, hand out whole messages.

use std::io;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, BytesMut};
use conduit_proto::{Command, Decoder, Handshake, Item, Message, PeerInfo};

use crate::error::{Error, RecvError, RecvTimeoutError, TryRecvError};
use crate::transport::{Transport, Wait};

/// Bytes asked for per read when the buffer runs low. Large enough that a stream
/// of small messages costs one system call per several hundred of them.
const READ_CHUNK: usize = 64 << 10;

/// Below this much free space, grow the buffer before reading.
const MIN_SPARE: usize = 4 << 10;

/// Why no message came back.
#[derive(Debug)]
pub(crate) enum RecvFail {
    /// Nothing whole arrived within the wait.
    WouldBlock,
    /// The stream ended cleanly, at a message boundary.
    Closed,
    /// The stream broke.
    Broken(Error),
}

impl RecvFail {
    pub(crate) fn into_recv(self) -> RecvError {
        match self {
            RecvFail::Closed => RecvError::Closed,
            RecvFail::Broken(e) => RecvError::Failed(e),
            RecvFail::WouldBlock => unreachable!("a receive without a deadline gave up"),
        }
    }

    pub(crate) fn into_try(self) -> TryRecvError {
        match self {
            RecvFail::WouldBlock => TryRecvError::Empty,
            RecvFail::Closed => TryRecvError::Closed,
            RecvFail::Broken(e) => TryRecvError::Failed(e),
        }
    }

    pub(crate) fn into_timeout(self) -> RecvTimeoutError {
        match self {
            RecvFail::WouldBlock => RecvTimeoutError::Timeout,
            RecvFail::Closed => RecvTimeoutError::Closed,
            RecvFail::Broken(e) => RecvTimeoutError::Failed(e),
        }
    }
}

#[derive(Debug)]
enum End {
    Closed,
    Broken(Error),
}

#[derive(Debug)]
struct State {
    buf: BytesMut,
    decoder: Decoder,
    /// Set once the stream has ended; every later call reports the same end.
    end: Option<End>,
}

/// The receiving half of a stream.
#[derive(Debug)]
pub(crate) struct Reader {
    transport: Arc<dyn Transport>,
    state: Mutex<State>,
}

impl Reader {
    pub(crate) fn new(transport: Arc<dyn Transport>, max_message_size: usize) -> Reader {
        Reader {
            transport,
            state: Mutex::new(State {
                buf: BytesMut::new(),
                decoder: Decoder::new(max_message_size),
                end: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads once into the spare capacity of `buf`; `Ok(0)` is the end of stream.
    fn fill(transport: &dyn Transport, buf: &mut BytesMut, wait: Wait) -> io::Result<usize> {
        if buf.capacity() - buf.len() < MIN_SPARE {
            buf.reserve(READ_CHUNK);
        }
        let spare = buf.spare_capacity_mut();
        let n = transport.read(spare, wait)?;
        // SAFETY: the transport initialized the first `n` bytes of the spare capacity.
        unsafe { buf.advance_mut(n) };
        Ok(n)
    }

    /// Receives the next whole message, handing commands to `on_command` on the way.
    ///
    /// An error from `on_command` breaks the stream.
    pub(crate) fn recv(
        &self,
        wait: Wait,
        mut on_command: impl FnMut(Command) -> Result<(), Error>,
    ) -> Result<Message, RecvFail> {
        let mut st = self.lock();
        let st = &mut *st;
        loop {
            match &st.end {
                Some(End::Closed) => return Err(RecvFail::Closed),
                Some(End::Broken(e)) => return Err(RecvFail::Broken(e.clone())),
                None => {}
            }
            match st.decoder.decode(&mut st.buf) {
                Ok(Some(Item::Message(msg))) => return Ok(msg),
                Ok(Some(Item::Command(cmd))) => {
                    if let Err(e) = on_command(cmd) {
                        st.end = Some(End::Broken(e));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    st.end = Some(End::Broken(Error::Protocol(e)));
                    continue;
                }
            }
            match Self::fill(&*self.transport, &mut st.buf, wait) {
                Ok(0) => {
                    st.end = Some(if st.buf.is_empty() && st.decoder.is_between_messages() {
                        End::Closed
                    } else {
                        End::Broken(Error::Truncated)
                    });
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(RecvFail::WouldBlock);
                }
                Err(e) => {
                    let error = Error::from_stream(e, "cannot read from the stream");
                    // A reset partway through a message loses the rest of it, just as
                    // an end of stream there would.
                    let mid_message = !st.buf.is_empty() || !st.decoder.is_between_messages();
                    st.end = Some(End::Broken(match error {
                        Error::Disconnected if mid_message => Error::Truncated,
                        other => other,
                    }));
                }
            }
        }
    }

    /// Reads until `handshake` completes, within `wait`. What the peer sent after
    /// its READY stays buffered for [`recv`](Self::recv).
    ///
    /// `Closed` here means the peer hung up before completing the handshake.
    pub(crate) fn handshake(
        &self,
        handshake: &mut Handshake,
        wait: Wait,
    ) -> Result<PeerInfo, RecvFail> {
        let mut st = self.lock();
        let st = &mut *st;
        loop {
            match handshake.handle_input(&mut st.buf) {
                Ok(Some(peer)) => return Ok(peer),
                Ok(None) => {}
                Err(e) => return Err(RecvFail::Broken(Error::Protocol(e))),
            }
            match Self::fill(&*self.transport, &mut st.buf, wait) {
                Ok(0) => return Err(RecvFail::Closed),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(RecvFail::WouldBlock);
                }
                Err(e) => {
                    return Err(RecvFail::Broken(Error::from_stream(
                        e,
                        "cannot read from the stream",
                    )));
                }
            }
        }
    }

    /// Whether the stream broke (an error, not a clean end).
    pub(crate) fn is_broken(&self) -> bool {
        matches!(self.lock().end, Some(End::Broken(_)))
    }

    /// Reads and discards whatever has already arrived, without waiting. Used before
    /// closing a socket: a socket closed with unread input resets the connection,
    /// and a reset can destroy what we sent last.
    pub(crate) fn discard_pending(&self) {
        let mut st = self.lock();
        let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
        st.buf.clear();
        while let Ok(n) = self.transport.read(&mut scratch, Wait::Never) {
            if n == 0 {
                break;
            }
        }
    }
}
