//! The long help texts: examples, when each command stops, exit codes. They go
//! into `--help`, the man pages and (by hand) docs/cli.md.

macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0    success; also when whatever reads standard output closes it (| head)
  1    timeout: --timeout passed before --count messages (without --count:
       before the first)
  2    usage or runtime error, printed once as `conduit: <what failed>: <cause>`
  130  Ctrl-C, after closing the sockets cleanly (a second Ctrl-C: at once)"
    };
}

macro_rules! two_way_stops {
    () => {
        "\
The messages to send are the -d and --file messages, else the lines of standard
input as they come. The command stops when they are all sent (standard input:
up to its end); with --count N, once N messages have arrived as well. Only
--repeat 0, which never ends, is cut short at N.\n\n"
    };
}

pub const TOP: &str = concat!(
    "\
Endpoints: tcp://host:port, tcp://host:* (bind: the OS picks the port),
ipc:///path, ipc://@name (Linux abstract). Socket commands take any number of
--bind and --connect; send and recv also take --connect - for a shell pipe.

Output (--format): text is one message per line, frames separated by TAB, with
\\\\, \\t, \\n, \\r and other non-printable bytes escaped (\\xNN); raw is the bytes as
they are; hex is each frame in hex, frames separated by TAB; json is one array
per message and line, a frame a string if it is UTF-8, else {\"hex\":\"...\"}.

Input: each -d, each --file (all of it), or each line of standard input is one
message; with --input json, each is a JSON array of frames in the same form.

--timeout SECS bounds each wait on its own (for a peer, a message, a reply),
not the whole run.

",
    exit_codes!(),
    "

Start with `conduit demo`; `conduit <command> --help` has examples."
);

pub const DEMO: &str = "\
Example:
  conduit demo

Runs a pipe between two processes, conversations over a Unix socket and TCP,
then PUSH/PULL, PUB/SUB, REQ/REP and a proxy showing its traffic (--capture,
-v) between real conduit processes, printing the shell commands that do the same.";

pub const SEND: &str = concat!(
    "\
Examples:
  conduit send --connect tcp://127.0.0.1:5555 -d hello -d world
  seq 3 | conduit send --bind ipc:///tmp/numbers.sock
  conduit send --connect - -d a -d b | conduit recv --connect -

One channel to one PAIR peer. Sends, then closes once the peer has everything.

",
    exit_codes!()
);

pub const RECV: &str = concat!(
    "\
Examples:
  conduit recv --bind tcp://127.0.0.1:5555 --count 2
  conduit recv --connect ipc:///tmp/numbers.sock --timeout 5 --format json

One channel to one PAIR peer. Prints each message until --count, or until the
peer closes.

",
    exit_codes!()
);

pub const PAIR: &str = concat!(
    "\
Examples:
  conduit pair --bind ipc:///tmp/chat.sock            # type lines; Ctrl-D ends
  conduit pair --connect ipc:///tmp/chat.sock -d hello --count 1

Sends each message to its one peer and prints what the peer sends, both at once.
",
    two_way_stops!(),
    exit_codes!()
);

pub const PUSH: &str = concat!(
    "\
Examples:
  conduit push --connect tcp://127.0.0.1:5557 -d job1 -d job2
  seq 100 | conduit push --bind ipc:///tmp/jobs.sock --bind tcp://127.0.0.1:5557
  conduit push --connect ipc:///tmp/ticks.sock -d tick --repeat 0 --interval 1

Each message goes to one connected puller, in turn; while none is connected,
push waits (up to --timeout). Stops once every message is sent and delivered, or
after --count N.

",
    exit_codes!()
);

pub const PULL: &str = concat!(
    "\
Examples:
  conduit pull --bind tcp://127.0.0.1:5557
  conduit pull --connect ipc:///tmp/jobs.sock --count 10 --format json
  conduit pull --bind ipc:///tmp/jobs.sock --exec 'wc -c'

Prints each message, until --count N messages, or --timeout without one, or
Ctrl-C. With --exec, runs `sh -c CMD` for each message instead of printing it,
one at a time, with the message on its standard input as --format writes it
(text: one line) and its output going to ours.

",
    exit_codes!()
);

pub const REQ: &str = concat!(
    "\
Examples:
  conduit req --connect tcp://127.0.0.1:5555 -d ping
  conduit req --connect ipc:///tmp/upper.sock --format json < requests.txt

Sends each message as a request, waits for the reply and prints it, then sends
the next. --count N stops after N replies. --timeout bounds each wait: for a
server to take the request, and for its reply.

",
    exit_codes!()
);

pub const REP: &str = concat!(
    "\
Examples:
  conduit rep --bind tcp://127.0.0.1:5555 --echo
  conduit rep --bind ipc:///tmp/upper.sock --exec 'tr a-z A-Z'
  conduit rep --bind tcp://127.0.0.1:5555 -d pong --count 1

Prints each request and answers it with: the request itself (--echo); the -d and
--file messages in turn, over and over; what `sh -c CMD` prints when given the
request on its standard input as --format writes it (--exec: the request is not
printed); or else the next line of standard input, stopping when it ends.
An --exec reply is the command's whole output less one trailing newline, as one
frame (with --input json: one JSON message). A command that fails is reported on
standard error, and its output is the reply all the same.
--count N stops after answering N requests.

",
    exit_codes!()
);

pub const DEALER: &str = concat!(
    "\
Examples:
  conduit dealer --connect tcp://127.0.0.1:5555 --identity client-1 -d hi --count 1
  conduit dealer --connect tcp://127.0.0.1:5555 --input json -d '[\"\", \"ping\"]' -n 1

Sends each message to its peers in turn and prints every message that arrives,
both at once, without REQ's lock-step (to a REP, put an empty frame first, as the
second example does).
",
    two_way_stops!(),
    exit_codes!()
);

pub const ROUTER: &str = concat!(
    "\
Examples:
  conduit router --bind tcp://127.0.0.1:5555 --count 1
  conduit router --bind tcp://127.0.0.1:5555 --input json -d '[\"client-1\", \"hi\"]'

Prints each message after the routing id of the peer that sent it: the identity
the peer announced, or five bytes made up (\\x00, then a counter). A message to
send names its peer by its first frame, so it takes --input json; router waits
(up to --timeout) for that peer to connect.
",
    two_way_stops!(),
    exit_codes!()
);

pub const PUB: &str = concat!(
    "\
Examples:
  conduit pub --bind tcp://127.0.0.1:5556 -d 'weather 21C' -d 'news hello'
  conduit pub --bind ipc:///tmp/ticks.sock -d tick --repeat 0 --interval 1

Sends each message to every subscriber with a prefix of its first frame.
ZeroMQ drops what is published while nobody is subscribed, so pub first waits
(up to --timeout) for a subscription: to see it, pub is an XPUB socket
underneath, and peers see an XPUB. --no-wait makes it a plain PUB that publishes
at once. Stops once every message is sent, or after --count N.

",
    exit_codes!()
);

pub const SUB: &str = concat!(
    "\
Examples:
  conduit sub --connect tcp://127.0.0.1:5556 --subscribe weather
  conduit sub --connect ipc:///tmp/ticks.sock --count 3 --timeout 5

Prints each message whose first frame starts with a --subscribe prefix (none:
every message), until --count N messages, --timeout without one, or Ctrl-C.
--exec CMD runs a command for each message, as pull does.

",
    exit_codes!()
);

pub const XPUB: &str = concat!(
    "\
Examples:
  conduit xpub --bind tcp://127.0.0.1:5556 -d 'weather 21C' --count 1

Publishes like pub (after a first subscription, unless --no-wait) and prints
each subscription that arrives: \\x01 then the prefix subscribed to, or \\x00 then
the prefix cancelled.
",
    two_way_stops!(),
    exit_codes!()
);

pub const XSUB: &str = concat!(
    "\
Examples:
  conduit xsub --connect tcp://127.0.0.1:5556 --subscribe weather --count 1 < /dev/null

Receives like sub; its subscriptions go upstream as messages (\\x01, then the
prefix), and so do the messages it sends, as they are.
",
    two_way_stops!(),
    exit_codes!()
);

pub const PROXY: &str = concat!(
    "\
Examples:
  conduit proxy broker --front-bind tcp://127.0.0.1:5559 --back-bind tcp://127.0.0.1:5560
  conduit proxy forwarder --front-bind ipc:///tmp/pub.sock --back-bind tcp://127.0.0.1:5556 --capture
  conduit proxy streamer --front-bind tcp://127.0.0.1:5557 --back-bind ipc:///tmp/work.sock --capture=json
  conduit proxy broker --front-bind tcp://127.0.0.1:5559 --front-curve-server \\
      --front-curve-secret-key front.key_secret --front-curve-allow clients \\
      --back-bind ipc:///tmp/workers.sock

broker: clients (req, dealer) use the frontend, workers (rep, dealer) the
backend; requests go to the workers in turn, each reply back to its client.
forwarder: publishers use the frontend, subscribers the backend, and the
subscriptions go upstream. streamer: pushers use the frontend, pullers the
backend.

--capture prints each message passing through to standard error after `> `
(frontend to backend) or `< ` (backend to frontend), as text (routing ids and
subscriptions show as \\xNN escapes), hex or json. Runs until --count messages
have passed, --timeout passes without one, or Ctrl-C.

Each side has the socket commands' security options with front- or back-
before them (--front-curve-server, --back-curve-server-key, --front-allow...).
The proxy opens and seals again: it sees the messages in clear.

",
    exit_codes!()
);

pub const KEYGEN: &str = "\
Examples:
  conduit keygen                      print a key pair as 40-character Z85 text
  conduit keygen --cert server        also write server.key and server.key_secret

A CURVE server keeps its secret key (--curve-server --curve-secret-key
server.key_secret) and gives clients its public key (--curve-server-key
server.key). See docs/security.md.";

pub const COMPLETIONS: &str = "\
Examples:
  conduit completions bash > ~/.local/share/bash-completion/completions/conduit
  conduit completions zsh > ~/.zfunc/_conduit
  conduit completions fish > ~/.config/fish/completions/conduit.fish";

pub const MAN: &str = "\
Examples:
  conduit man | man -l -
  conduit man push > conduit-push.1";
