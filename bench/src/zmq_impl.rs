//! libzmq through a minimal hand-written binding to its C API (the system's
//! libzmq, Debian's `libzmq3-dev`). PAIR sockets for round trips, PUSH to PULL for
//! streams, as libzmq's own perf tools do. libzmq has no pipe transport.

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use anyhow::{Result, bail};

use crate::case::{Case, Mode, Role, Transport};
use crate::measure::Link;
use crate::peer::{Meet, announce};

const ZMQ_PAIR: c_int = 0;
const ZMQ_PULL: c_int = 7;
const ZMQ_PUSH: c_int = 8;
const ZMQ_LAST_ENDPOINT: c_int = 32;

/// `zmq_msg_t`: 64 opaque bytes, pointer-aligned.
#[repr(C, align(8))]
struct ZmqMsg([u8; 64]);

#[link(name = "zmq")]
unsafe extern "C" {
    fn zmq_ctx_new() -> *mut c_void;
    fn zmq_socket(ctx: *mut c_void, kind: c_int) -> *mut c_void;
    fn zmq_bind(socket: *mut c_void, endpoint: *const c_char) -> c_int;
    fn zmq_connect(socket: *mut c_void, endpoint: *const c_char) -> c_int;
    fn zmq_getsockopt(
        socket: *mut c_void,
        option: c_int,
        value: *mut c_void,
        len: *mut usize,
    ) -> c_int;
    fn zmq_send(socket: *mut c_void, buf: *const c_void, len: usize, flags: c_int) -> c_int;
    fn zmq_msg_init(msg: *mut ZmqMsg) -> c_int;
    fn zmq_msg_send(msg: *mut ZmqMsg, socket: *mut c_void, flags: c_int) -> c_int;
    fn zmq_msg_recv(msg: *mut ZmqMsg, socket: *mut c_void, flags: c_int) -> c_int;
    fn zmq_errno() -> c_int;
    fn zmq_strerror(errnum: c_int) -> *const c_char;
}

fn last_error(what: &str) -> anyhow::Error {
    // SAFETY: zmq_strerror returns a static NUL-terminated string for any number.
    let text = unsafe { CStr::from_ptr(zmq_strerror(zmq_errno())) };
    anyhow::anyhow!("{what}: {}", text.to_string_lossy())
}

fn check(rc: c_int, what: &str) -> Result<c_int> {
    if rc < 0 {
        Err(last_error(what))
    } else {
        Ok(rc)
    }
}

struct ZmqLink {
    socket: *mut c_void,
    /// Reused for every receive, as local_lat and local_thr do.
    msg: Box<ZmqMsg>,
    payload: Vec<u8>,
}

impl Link for ZmqLink {
    fn send(&mut self) -> Result<()> {
        // SAFETY: the socket is open; libzmq copies `payload` before returning.
        let rc = unsafe {
            zmq_send(
                self.socket,
                self.payload.as_ptr().cast(),
                self.payload.len(),
                0,
            )
        };
        check(rc, "zmq_send").map(drop)
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        // SAFETY: the socket is open and `msg` was initialized.
        let rc = unsafe { zmq_msg_recv(&mut *self.msg, self.socket, 0) };
        Ok(Some(check(rc, "zmq_msg_recv")? as usize))
    }

    fn echo(&mut self) -> Result<bool> {
        // SAFETY: as in recv; zmq_msg_send leaves `msg` empty and initialized again.
        unsafe {
            check(zmq_msg_recv(&mut *self.msg, self.socket, 0), "zmq_msg_recv")?;
            check(zmq_msg_send(&mut *self.msg, self.socket, 0), "zmq_msg_send")?;
        }
        Ok(true)
    }
}

/// Connects a libzmq link for `case`.
pub fn open(case: &Case, role: Role, meet: Meet) -> Result<Box<dyn Link>> {
    let kind = match (case.mode, role) {
        (Mode::Lat, _) => ZMQ_PAIR,
        (Mode::Thr, Role::Local) => ZMQ_PULL,
        (Mode::Thr, Role::Remote) => ZMQ_PUSH,
    };
    // SAFETY: plain constructor calls; null results are checked.
    let socket = unsafe {
        let ctx = zmq_ctx_new();
        if ctx.is_null() {
            return Err(last_error("zmq_ctx_new"));
        }
        let socket = zmq_socket(ctx, kind);
        if socket.is_null() {
            return Err(last_error("zmq_socket"));
        }
        socket
    };
    match role {
        Role::Local => {
            let endpoint = match case.transport {
                Transport::Ipc => format!("ipc://{}", meet.dir.join("libzmq.sock").display()),
                Transport::Tcp => "tcp://127.0.0.1:*".to_owned(),
                Transport::Pipe => bail!("libzmq has no pipe transport"),
            };
            let c = CString::new(endpoint)?;
            // SAFETY: the socket is open, the endpoint NUL-terminated.
            check(unsafe { zmq_bind(socket, c.as_ptr()) }, "zmq_bind")?;
            let mut buf = [0u8; 256];
            let mut len = buf.len();
            // SAFETY: libzmq writes at most `len` bytes into `buf` and updates `len`.
            check(
                unsafe {
                    zmq_getsockopt(socket, ZMQ_LAST_ENDPOINT, buf.as_mut_ptr().cast(), &mut len)
                },
                "zmq_getsockopt",
            )?;
            let bound = CStr::from_bytes_until_nul(&buf[..len])?;
            announce(&bound.to_string_lossy());
        }
        Role::Remote => {
            let c = CString::new(meet.endpoint()?)?;
            // SAFETY: as for zmq_bind.
            check(unsafe { zmq_connect(socket, c.as_ptr()) }, "zmq_connect")?;
        }
    }
    let mut msg = Box::new(ZmqMsg([0; 64]));
    // SAFETY: `msg` is a properly sized and aligned zmq_msg_t.
    check(unsafe { zmq_msg_init(&mut *msg) }, "zmq_msg_init")?;
    Ok(Box::new(ZmqLink {
        socket,
        msg,
        payload: vec![0xA5; case.size],
    }))
}
