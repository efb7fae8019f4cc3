//! A minimal hand-written binding to libzmq's C API (the system's libzmq,
//! Debian's `libzmq3-dev`), shared by the libzmq peer of the matrix
//! (`zmq_impl`) and the scale group's libzmq servers and clients (`scale`).
//! Only what those use; every call is wrapped where its result is checked.

use std::ffi::{CStr, CString, c_char, c_int, c_short, c_void};

use anyhow::Result;

pub const ZMQ_PAIR: c_int = 0;
pub const ZMQ_PUB: c_int = 1;
pub const ZMQ_SUB: c_int = 2;
pub const ZMQ_DEALER: c_int = 5;
pub const ZMQ_ROUTER: c_int = 6;
pub const ZMQ_PULL: c_int = 7;
pub const ZMQ_PUSH: c_int = 8;

// Socket options.
pub const ZMQ_SUBSCRIBE: c_int = 6;
pub const ZMQ_SNDBUF: c_int = 11;
pub const ZMQ_RCVBUF: c_int = 12;
pub const ZMQ_LINGER: c_int = 17;
pub const ZMQ_BACKLOG: c_int = 19;
pub const ZMQ_SNDHWM: c_int = 23;
pub const ZMQ_RCVHWM: c_int = 24;
pub const ZMQ_LAST_ENDPOINT: c_int = 32;
pub const ZMQ_CURVE_SERVER: c_int = 47;
pub const ZMQ_CURVE_PUBLICKEY: c_int = 48;
pub const ZMQ_CURVE_SECRETKEY: c_int = 49;
pub const ZMQ_CURVE_SERVERKEY: c_int = 50;
pub const ZMQ_HANDSHAKE_IVL: c_int = 66;

// Context options.
pub const ZMQ_MAX_SOCKETS: c_int = 2;

// Flags.
pub const ZMQ_DONTWAIT: c_int = 1;
pub const ZMQ_SNDMORE: c_int = 2;
pub const ZMQ_POLLIN: c_short = 1;

/// `zmq_msg_t`: 64 opaque bytes, pointer-aligned.
#[repr(C, align(8))]
pub struct ZmqMsg(pub [u8; 64]);

/// `zmq_pollitem_t` on Unix.
#[repr(C)]
pub struct PollItem {
    pub socket: *mut c_void,
    pub fd: c_int,
    pub events: c_short,
    pub revents: c_short,
}

#[link(name = "zmq")]
unsafe extern "C" {
    pub fn zmq_ctx_new() -> *mut c_void;
    pub fn zmq_ctx_set(ctx: *mut c_void, option: c_int, value: c_int) -> c_int;
    pub fn zmq_socket(ctx: *mut c_void, kind: c_int) -> *mut c_void;
    pub fn zmq_bind(socket: *mut c_void, endpoint: *const c_char) -> c_int;
    pub fn zmq_connect(socket: *mut c_void, endpoint: *const c_char) -> c_int;
    pub fn zmq_setsockopt(
        socket: *mut c_void,
        option: c_int,
        value: *const c_void,
        len: usize,
    ) -> c_int;
    pub fn zmq_getsockopt(
        socket: *mut c_void,
        option: c_int,
        value: *mut c_void,
        len: *mut usize,
    ) -> c_int;
    pub fn zmq_send(socket: *mut c_void, buf: *const c_void, len: usize, flags: c_int) -> c_int;
    pub fn zmq_recv(socket: *mut c_void, buf: *mut c_void, len: usize, flags: c_int) -> c_int;
    pub fn zmq_msg_init(msg: *mut ZmqMsg) -> c_int;
    pub fn zmq_msg_close(msg: *mut ZmqMsg) -> c_int;
    pub fn zmq_close(socket: *mut c_void) -> c_int;
    pub fn zmq_msg_send(msg: *mut ZmqMsg, socket: *mut c_void, flags: c_int) -> c_int;
    pub fn zmq_msg_recv(msg: *mut ZmqMsg, socket: *mut c_void, flags: c_int) -> c_int;
    pub fn zmq_poll(items: *mut PollItem, count: c_int, timeout_ms: std::ffi::c_long) -> c_int;
    pub fn zmq_errno() -> c_int;
    pub fn zmq_strerror(errnum: c_int) -> *const c_char;
}

pub fn last_error(what: &str) -> anyhow::Error {
    // SAFETY: zmq_strerror returns a static NUL-terminated string for any number.
    let text = unsafe { CStr::from_ptr(zmq_strerror(zmq_errno())) };
    anyhow::anyhow!("{what}: {}", text.to_string_lossy())
}

pub fn check(rc: c_int, what: &str) -> Result<c_int> {
    if rc < 0 {
        Err(last_error(what))
    } else {
        Ok(rc)
    }
}

/// Whether the last call failed only because it would have blocked.
pub fn would_block() -> bool {
    // SAFETY: reads libzmq's thread-local error number.
    unsafe { zmq_errno() == libc::EAGAIN }
}

/// A new context; `max_sockets` raises libzmq's default cap of 1023 sockets.
pub fn context(max_sockets: Option<usize>) -> Result<*mut c_void> {
    // SAFETY: plain constructor; a null result is checked.
    let ctx = unsafe { zmq_ctx_new() };
    if ctx.is_null() {
        return Err(last_error("zmq_ctx_new"));
    }
    if let Some(n) = max_sockets {
        let n = c_int::try_from(n).unwrap_or(c_int::MAX);
        // SAFETY: the context is open.
        check(
            unsafe { zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, n) },
            "zmq_ctx_set",
        )?;
    }
    Ok(ctx)
}

/// A new socket of `kind` in `ctx`.
pub fn socket(ctx: *mut c_void, kind: c_int) -> Result<*mut c_void> {
    // SAFETY: the context is open; a null result is checked.
    let socket = unsafe { zmq_socket(ctx, kind) };
    if socket.is_null() {
        return Err(last_error("zmq_socket"));
    }
    Ok(socket)
}

/// Sets an integer socket option.
pub fn set_int(socket: *mut c_void, option: c_int, value: c_int) -> Result<()> {
    // SAFETY: the socket is open; libzmq reads `len` bytes of `value`.
    let rc = unsafe {
        zmq_setsockopt(
            socket,
            option,
            (&raw const value).cast(),
            size_of::<c_int>(),
        )
    };
    check(rc, "zmq_setsockopt").map(drop)
}

/// Sets a byte-string socket option (a subscription, a CURVE key).
pub fn set_bytes(socket: *mut c_void, option: c_int, value: &[u8]) -> Result<()> {
    // SAFETY: the socket is open; libzmq reads `len` bytes of `value`.
    let rc = unsafe { zmq_setsockopt(socket, option, value.as_ptr().cast(), value.len()) };
    check(rc, "zmq_setsockopt").map(drop)
}

/// Binds `socket` and returns the endpoint it is bound to (the port chosen for
/// `tcp://...:*`).
pub fn bind(socket: *mut c_void, endpoint: &str) -> Result<String> {
    let c = CString::new(endpoint)?;
    // SAFETY: the socket is open, the endpoint NUL-terminated.
    check(unsafe { zmq_bind(socket, c.as_ptr()) }, "zmq_bind")?;
    let mut buf = [0u8; 256];
    let mut len = buf.len();
    // SAFETY: libzmq writes at most `len` bytes into `buf` and updates `len`.
    check(
        unsafe { zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, buf.as_mut_ptr().cast(), &mut len) },
        "zmq_getsockopt",
    )?;
    Ok(CStr::from_bytes_until_nul(&buf[..len])?
        .to_string_lossy()
        .into_owned())
}

/// Connects `socket` to `endpoint` (returns at once; libzmq connects in the
/// background).
pub fn connect(socket: *mut c_void, endpoint: &str) -> Result<()> {
    let c = CString::new(endpoint)?;
    // SAFETY: the socket is open, the endpoint NUL-terminated.
    check(unsafe { zmq_connect(socket, c.as_ptr()) }, "zmq_connect").map(drop)
}

/// An initialized, empty message, boxed so that its address stays put.
pub fn message() -> Result<Box<ZmqMsg>> {
    let mut msg = Box::new(ZmqMsg([0; 64]));
    // SAFETY: `msg` is a properly sized and aligned zmq_msg_t.
    check(unsafe { zmq_msg_init(&mut *msg) }, "zmq_msg_init")?;
    Ok(msg)
}
