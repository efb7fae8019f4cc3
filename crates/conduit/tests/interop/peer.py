"""A real ZeroMQ peer (pyzmq, libzmq underneath) for conduit's interop tests.

usage: peer.py TYPE bind|connect ENDPOINT ACTION [N]

  TYPE      a ZeroMQ socket type: PAIR, PUSH, PULL, REQ, REP, ...
  ENDPOINT  tcp://... or ipc://...; when binding, the bound endpoint is printed
            as "ENDPOINT <endpoint>" on the first line of standard output
  ACTION    echo      send every message back until one is just [b"bye"]
            send N    send N two-frame messages [b"msg", b"<i>"], then close
            recv N    receive N messages; print each as a JSON list of hex frames

Every receive times out after 10 s so that a broken test fails instead of hanging.
"""

import json
import sys

import zmq


def main():
    kind, how, endpoint, action = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    ctx = zmq.Context()
    sock = ctx.socket(getattr(zmq, kind))
    sock.rcvtimeo = 10_000
    sock.sndtimeo = 10_000
    sock.linger = 10_000
    if how == "bind":
        sock.bind(endpoint)
        print("ENDPOINT", sock.last_endpoint.decode(), flush=True)
    else:
        sock.connect(endpoint)
    if action == "echo":
        while True:
            msg = sock.recv_multipart()
            if msg == [b"bye"]:
                break
            sock.send_multipart(msg)
    elif action == "send":
        for i in range(n):
            sock.send_multipart([b"msg", str(i).encode()])
    elif action == "recv":
        for _ in range(n):
            msg = sock.recv_multipart()
            print(json.dumps([frame.hex() for frame in msg]), flush=True)
    else:
        sys.exit(f"unknown action {action}")
    sock.close()
    ctx.term()


if __name__ == "__main__":
    main()
