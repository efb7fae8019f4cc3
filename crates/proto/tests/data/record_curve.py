"""Records CURVE handshake bytes from libzmq (through pyzmq) for conduit's
known-answer tests (crates/proto/src/mechanism/kat.rs).

usage: record_curve.py hello
           a libzmq CURVE client's greeting and HELLO, sent to a bare TCP
           listener that answers with a CURVE greeting
       record_curve.py welcome HELLO_HEX
           a libzmq CURVE server's WELCOME to the given HELLO frame

The server's long-term key pair is the fixed one below (a pair from libzmq's
test suite), so a recorded HELLO opens with its secret key, and a WELCOME
opens with the HELLO's short-term secret key (fixed in the test).
"""

import socket
import sys
import time

import zmq

SERVER_PUBLIC = b"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
SERVER_SECRET = b"D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"


def greeting(as_server):
    g = bytearray(64)
    g[0], g[9], g[10], g[11] = 0xFF, 0x7F, 3, 1
    g[12:17] = b"CURVE"
    g[32] = as_server
    return bytes(g)


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            sys.exit("peer closed early")
        data += chunk
    return data


def hello():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    ctx = zmq.Context()
    client = ctx.socket(zmq.DEALER)
    client.curve_serverkey = SERVER_PUBLIC
    client.curve_publickey, client.curve_secretkey = zmq.curve_keypair()
    client.connect("tcp://127.0.0.1:%d" % listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.sendall(greeting(1))
    read_exactly(conn, 64)
    frame = read_exactly(conn, 2 + 200)
    print(frame.hex())
    client.close(0)
    ctx.term()


def welcome(hello_hex):
    ctx = zmq.Context()
    server = ctx.socket(zmq.ROUTER)
    server.curve_server = True
    server.curve_secretkey = SERVER_SECRET
    server.curve_publickey = SERVER_PUBLIC
    port = server.bind_to_random_port("tcp://127.0.0.1")
    conn = socket.create_connection(("127.0.0.1", port))
    conn.sendall(greeting(0) + bytes.fromhex(hello_hex))
    read_exactly(conn, 64)
    frame = read_exactly(conn, 2 + 168)
    print(frame.hex())
    conn.close()
    server.close(0)
    ctx.term()


if __name__ == "__main__":
    if sys.argv[1] == "hello":
        hello()
    else:
        welcome(sys.argv[2])
