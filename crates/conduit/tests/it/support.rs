//! What the tests share: a way to open a link over every transport, and a way for
//! a test to re-run this binary as a child process.

use std::process::Command;
use std::time::Duration;

use conduit::{
    Channel, ChannelBuilder, Error, Message, PipeReceiver, PipeSender, RecvError, RecvTimeoutError,
    SendError, SendTimeoutError, TryRecvError, TrySendError,
};

/// The sending side of any transport, so one test runs against all of them.
pub trait Tx: Send + Sync {
    fn send(&self, m: Message) -> Result<(), SendError>;
    fn try_send(&self, m: Message) -> Result<(), TrySendError>;
    fn send_timeout(&self, m: Message, t: Duration) -> Result<(), SendTimeoutError>;
    fn close(self: Box<Self>) -> Result<(), Error>;
}

/// The receiving side of any transport.
pub trait Rx: Send {
    fn recv(&self) -> Result<Message, RecvError>;
    fn try_recv(&self) -> Result<Message, TryRecvError>;
    fn recv_timeout(&self, t: Duration) -> Result<Message, RecvTimeoutError>;
}

macro_rules! impl_tx {
    ($t:ty) => {
        impl Tx for $t {
            fn send(&self, m: Message) -> Result<(), SendError> {
                <$t>::send(self, m)
            }
            fn try_send(&self, m: Message) -> Result<(), TrySendError> {
                <$t>::try_send(self, m)
            }
            fn send_timeout(&self, m: Message, t: Duration) -> Result<(), SendTimeoutError> {
                <$t>::send_timeout(self, m, t)
            }
            fn close(self: Box<Self>) -> Result<(), Error> {
                <$t>::close(*self)
            }
        }
    };
}

macro_rules! impl_rx {
    ($t:ty) => {
        impl Rx for $t {
            fn recv(&self) -> Result<Message, RecvError> {
                <$t>::recv(self)
            }
            fn try_recv(&self) -> Result<Message, TryRecvError> {
                <$t>::try_recv(self)
            }
            fn recv_timeout(&self, t: Duration) -> Result<Message, RecvTimeoutError> {
                <$t>::recv_timeout(self, t)
            }
        }
    };
}

impl_tx!(Channel);
impl_tx!(PipeSender);
impl_rx!(Channel);
impl_rx!(PipeReceiver);

pub const TRANSPORTS: [&str; 4] = ["pipe", "pair", "ipc", "tcp"];

/// A connected (sender, receiver) over `transport`, both built by `builder`.
pub fn link(transport: &str, builder: &ChannelBuilder) -> (Box<dyn Tx>, Box<dyn Rx>) {
    match transport {
        "pipe" => {
            let (tx, rx) = builder.pipe().unwrap();
            (Box::new(tx), Box::new(rx))
        }
        _ => {
            let (a, b) = channel_pair(transport, builder);
            (Box::new(a), Box::new(b))
        }
    }
}

/// Two connected channels over "pair", "ipc" or "tcp".
pub fn channel_pair(transport: &str, builder: &ChannelBuilder) -> (Channel, Channel) {
    match transport {
        "pair" => builder.pair().unwrap(),
        "ipc" | "tcp" => {
            let dir = tempfile::tempdir().unwrap();
            let endpoint = match transport {
                "ipc" => format!("ipc://{}/s.sock", dir.path().display()),
                _ => "tcp://127.0.0.1:0".to_owned(),
            };
            let listener = builder.listen(&endpoint).unwrap();
            let endpoint = listener.endpoint().to_string();
            let connector = {
                let builder = builder.clone();
                std::thread::spawn(move || builder.connect(&endpoint).unwrap())
            };
            let a = listener.accept().unwrap();
            let b = connector.join().unwrap();
            drop(dir);
            (a, b)
        }
        other => panic!("no such transport {other}"),
    }
}

/// The environment variable that tells a re-run test binary which child role to play.
const ROLE: &str = "CONDUIT_TEST_ROLE";

/// If this process is the child of the test `test`, the role's name.
pub fn child_role(test: &str) -> Option<String> {
    std::env::var(ROLE)
        .ok()
        .and_then(|v| v.strip_prefix(&format!("{test}/")).map(str::to_owned))
}

/// A command that re-runs this test binary as a child playing `role` in `test`
/// (a test path such as `process::some_test`).
pub fn child_command(test: &str, role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, format!("{test}/{role}"))
        .stdout(std::process::Stdio::null());
    cmd
}

/// Numbered small messages, for order checks.
pub fn numbered(i: u32) -> Message {
    Message::from(i.to_be_bytes().to_vec())
}

pub fn number_of(m: &Message) -> u32 {
    u32::from_be_bytes(m.concat()[..].try_into().unwrap())
}
