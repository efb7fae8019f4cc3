//! libzmq through its C API (`zmq_ffi`). PAIR sockets for round trips, PUSH to PULL for
//! streams, as libzmq's own perf tools do. libzmq has no pipe transport.
//! `libzmq-curve` is the same with CURVE, the local (binding) end the server.

use std::ffi::c_void;

use anyhow::{Result, bail};

use crate::case::{Case, Impl, Mode, Role, Transport, curve_keys};
use crate::measure::Link;
use crate::peer::{Meet, announce};
use crate::zmq_ffi::{
    self, ZMQ_PAIR, ZMQ_PULL, ZMQ_PUSH, ZmqMsg, check, zmq_msg_recv, zmq_msg_send, zmq_send,
};

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
    let socket = zmq_ffi::socket(zmq_ffi::context(None)?, kind)?;
    if meet.sockbuf > 0 {
        let n = i32::try_from(meet.sockbuf)?;
        zmq_ffi::set_int(socket, zmq_ffi::ZMQ_SNDBUF, n)?;
        zmq_ffi::set_int(socket, zmq_ffi::ZMQ_RCVBUF, n)?;
    }
    if case.imp == Impl::LibzmqCurve {
        // Keys as 32 raw bytes; set before bind/connect, as libzmq requires.
        let (server, client) = curve_keys();
        match role {
            Role::Local => {
                zmq_ffi::set_int(socket, zmq_ffi::ZMQ_CURVE_SERVER, 1)?;
                zmq_ffi::set_bytes(
                    socket,
                    zmq_ffi::ZMQ_CURVE_SECRETKEY,
                    server.secret.as_bytes(),
                )?;
            }
            Role::Remote => {
                zmq_ffi::set_bytes(
                    socket,
                    zmq_ffi::ZMQ_CURVE_SERVERKEY,
                    server.public.as_bytes(),
                )?;
                zmq_ffi::set_bytes(
                    socket,
                    zmq_ffi::ZMQ_CURVE_PUBLICKEY,
                    client.public.as_bytes(),
                )?;
                zmq_ffi::set_bytes(
                    socket,
                    zmq_ffi::ZMQ_CURVE_SECRETKEY,
                    client.secret.as_bytes(),
                )?;
            }
        }
    }
    match role {
        Role::Local => {
            let endpoint = match case.transport {
                Transport::Ipc => format!("ipc://{}", meet.dir.join("libzmq.sock").display()),
                Transport::Tcp => "tcp://127.0.0.1:*".to_owned(),
                Transport::Pipe => bail!("libzmq has no pipe transport"),
            };
            announce(&zmq_ffi::bind(socket, &endpoint)?);
        }
        Role::Remote => zmq_ffi::connect(socket, meet.endpoint()?)?,
    }
    let msg = zmq_ffi::message()?;
    Ok(Box::new(ZmqLink {
        socket,
        msg,
        payload: vec![0xA5; case.size],
    }))
}
