"""A real ZeroMQ peer (pyzmq, libzmq underneath) for conduit's interop tests.

usage: peer.py TYPE bind|connect ENDPOINT ACTION [ARGS...]

  TYPE      a ZeroMQ socket type: PAIR, PUSH, PULL, REQ, REP, DEALER, ROUTER,
            PUB, SUB, XPUB, XSUB
  ENDPOINT  tcp://... or ipc://...; when binding, the bound endpoint is printed
            as "ENDPOINT <endpoint>" on the first line of standard output

  ACTION    echo N        receive N messages, sending each back unchanged
            send N        send N messages [b"msg", b"<i>"]
            recv N        receive N messages, printing each
            request N     send N requests [b"req", b"<i>"] (a DEALER puts the
                          empty delimiter first) and print each reply
            publish       until standard input closes: if XPUB, first wait for a
                          subscription and print it; then send [b"a.<i>"] and
                          [b"b.<i>"] every 5 ms
            subscribe T N subscribe to T (an XSUB sends b"\\x01" + T), then
                          receive N messages, printing each
            quiet MS      wait MS milliseconds for a message: print it, or
                          NOTHING if none came

Printed messages are one JSON list of hex frames per line. Options: a ROUTER
or DEALER takes its routing id from the environment variable PEER_ID.

Security, from the environment (keys as 40-character Z85):
  CURVE_SERVER_SECRET   be a CURVE server with this secret key
  CURVE_ALLOW_DIR       ... letting in only clients whose *.key is there (ZAP)
  CURVE_SERVERKEY       be a CURVE client of this server key, with the key pair
                        CURVE_SECRET (its public half derived) or a new one
  PLAIN_USER, PLAIN_PASSWORD   be a PLAIN client
  PLAIN_SERVER_USERS    be a PLAIN server letting in these user:password pairs
                        (comma-separated), checked by a ZAP handler Every
receive times out after 10 s, so a broken test fails instead of hanging.
"""

import json
import os
import select
import sys

import zmq


def show(msg):
    print(json.dumps([frame.hex() for frame in msg]), flush=True)


def stdin_closed():
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready) and sys.stdin.read(1) == ""


def main():
    kind, how, endpoint, action, *args = sys.argv[1:]
    ctx = zmq.Context()
    sock = ctx.socket(getattr(zmq, kind))
    sock.rcvtimeo = 10_000
    sock.sndtimeo = 10_000
    sock.linger = 10_000
    auth = security(ctx, sock)
    if os.environ.get("PEER_ID"):
        sock.setsockopt(zmq.ROUTING_ID, os.environ["PEER_ID"].encode())
    if how == "bind":
        sock.bind(endpoint)
        print("ENDPOINT", sock.last_endpoint.decode(), flush=True)
    else:
        sock.connect(endpoint)

    if action == "echo":
        for _ in range(int(args[0])):
            sock.send_multipart(sock.recv_multipart())
    elif action == "send":
        for i in range(int(args[0])):
            sock.send_multipart([b"msg", str(i).encode()])
    elif action == "recv":
        for _ in range(int(args[0])):
            show(sock.recv_multipart())
    elif action == "request":
        for i in range(int(args[0])):
            request = [b"req", str(i).encode()]
            if kind == "DEALER":
                request.insert(0, b"")
            sock.send_multipart(request)
            show(sock.recv_multipart())
    elif action == "publish":
        if kind == "XPUB":
            show(sock.recv_multipart())
        i = 0
        while not stdin_closed():
            sock.send_multipart([b"a.%d" % i])
            sock.send_multipart([b"b.%d" % i])
            i += 1
            select.select([], [], [], 0.005)
    elif action == "subscribe":
        topic = args[0].encode()
        if kind == "XSUB":
            sock.send(b"\x01" + topic)
        else:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        for _ in range(int(args[1])):
            show(sock.recv_multipart())
    elif action == "quiet":
        if sock.poll(int(args[0])):
            show(sock.recv_multipart())
        else:
            print("NOTHING", flush=True)
    else:
        sys.exit(f"unknown action {action}")
    sock.close()
    if auth is not None:
        auth.stop()
    ctx.term()


def security(ctx, sock):
    """Sets up CURVE or PLAIN from the environment; returns the ZAP handler."""
    env = os.environ
    auth = None
    if env.get("CURVE_ALLOW_DIR") or env.get("PLAIN_SERVER_USERS"):
        from zmq.auth.thread import ThreadAuthenticator

        auth = ThreadAuthenticator(ctx)
        auth.start()
        if env.get("CURVE_ALLOW_DIR"):
            auth.configure_curve(domain="*", location=env["CURVE_ALLOW_DIR"])
        if env.get("PLAIN_SERVER_USERS"):
            users = dict(p.split(":", 1) for p in env["PLAIN_SERVER_USERS"].split(","))
            auth.configure_plain(domain="*", passwords=users)
    if env.get("CURVE_SERVER_SECRET"):
        secret = env["CURVE_SERVER_SECRET"].encode()
        sock.curve_secretkey = secret
        sock.curve_publickey = zmq.curve_public(secret)
        sock.curve_server = True
    elif env.get("CURVE_SERVERKEY"):
        if env.get("CURVE_SECRET"):
            secret = env["CURVE_SECRET"].encode()
            public = zmq.curve_public(secret)
        else:
            public, secret = zmq.curve_keypair()
        sock.curve_serverkey = env["CURVE_SERVERKEY"].encode()
        sock.curve_publickey = public
        sock.curve_secretkey = secret
    elif env.get("PLAIN_USER"):
        sock.plain_username = env["PLAIN_USER"].encode()
        sock.plain_password = env["PLAIN_PASSWORD"].encode()
    elif env.get("PLAIN_SERVER_USERS"):
        sock.plain_server = True
    return auth


if __name__ == "__main__":
    main()
