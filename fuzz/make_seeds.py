#!/usr/bin/env python3
"""Writes the hand-made seed corpus under fuzz/corpus/<target>/.

Run from anywhere: `python3 fuzz/make_seeds.py`. Every seed is built here from
the ZMTP 3.1 grammar by hand (not by conduit's encoders), so a seed that the
code under test rejects is a finding, not a tautology. The script clears only
the seed directories' files it would write; it never touches a grown corpus.
"""

import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def short(flags, body):
    assert len(body) <= 255
    return bytes([flags, len(body)]) + body


def long_(flags, body, size=None):
    size = len(body) if size is None else size
    return bytes([flags | 0x02]) + struct.pack(">Q", size) + body


def frame(body, more=False):
    flags = 0x01 if more else 0x00
    return short(flags, body) if len(body) <= 255 else long_(flags, body)


def message(*frames):
    out = b""
    for i, f in enumerate(frames):
        out += frame(f, more=i + 1 < len(frames))
    return out


def prop(name, value):
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value


def body(name, data=b""):
    return bytes([len(name)]) + name + data


def command(name, data=b""):
    b = body(name, data)
    return short(0x04, b) if len(b) <= 255 else long_(0x04, b)


READY_PAIR = prop(b"Socket-Type", b"PAIR")
READY_DEALER = prop(b"Socket-Type", b"DEALER") + prop(b"Identity", b"peer-1")


def greeting(major=3, minor=1, mechanism=b"NULL", padding=bytes(8), as_server=0):
    g = b"\xff" + padding + b"\x7f" + bytes([major, minor])
    g += mechanism + bytes(20 - len(mechanism)) + bytes([as_server]) + bytes(31)
    assert len(g) == 64
    return g


OURS = greeting()

COMMAND_BODIES = {
    "ready_pair": body(b"READY", READY_PAIR),
    "ready_dealer_identity": body(b"READY", READY_DEALER + prop(b"X-App", b"demo")),
    "ready_empty": body(b"READY"),
    "ping": body(b"PING", b"\x00\x64ctx"),
    "ping_no_context": body(b"PING", b"\x00\x00"),
    "ping_16_context": body(b"PING", b"\x01\x2c" + b"0123456789abcdef"),
    "pong": body(b"PONG", b"ctx"),
    "pong_empty": body(b"PONG"),
    "subscribe": body(b"SUBSCRIBE", b"weather."),
    "subscribe_all": body(b"SUBSCRIBE"),
    "cancel": body(b"CANCEL", b"weather."),
    "error": body(b"ERROR", b"\x0fbad socket type"),
    "error_lying_length": body(b"ERROR", b"\xffbye"),
    "error_empty": body(b"ERROR"),
    "unknown_join": body(b"JOIN", b"group"),
    "bad_empty": b"",
    "bad_empty_name": b"\x00",
    "bad_name_past_end": b"\x09SHORT",
    "bad_ping_short_ttl": body(b"PING", b"\x01"),
    "bad_ping_17_context": body(b"PING", b"\x00\x00" + b"seventeen bytes!!"),
    "bad_pong_17_context": body(b"PONG", b"seventeen bytes!!"),
    "bad_ready_property": body(b"READY", b"\x03a b\x00\x00\x00\x00"),
}

PROPERTIES = {
    "socket_type": READY_PAIR,
    "dealer_identity": READY_DEALER,
    "empty": b"",
    "empty_value": prop(b"Identity", b""),
    "duplicate_names_any_case": prop(b"X-Thing", b"a") + prop(b"x-thing", b"b"),
    "name_255": prop(b"a" * 255, b"v"),
    "all_name_chars": prop(b"Az09-_.+", b"\x00\xff"),
    "value_300": prop(b"X-Big", bytes(range(256)) + bytes(44)),
    "bad_empty_name": b"\x00",
    "bad_name_past_end": b"\x05abc",
    "bad_value_length_truncated": b"\x03abc\x00\x00",
    "bad_value_past_end": b"\x03abc\x00\x00\x00\x09short",
    "bad_value_over_2g": b"\x03abc\xff\xff\xff\xff",
    "bad_name_char": b"\x03a b\x00\x00\x00\x00",
}

GREETINGS = {
    "ours": OURS,
    "zmtp_3_0": greeting(minor=0),
    "zmtp_4_0": greeting(major=4, minor=0),
    "padding_and_as_server": greeting(padding=b"\x01\x02\x03\x04\x05\x06\x07\x08", as_server=1),
    "plain": greeting(mechanism=b"PLAIN"),
    "curve": greeting(mechanism=b"CURVE"),
    "nullx": greeting(mechanism=b"NULLX"),
    "no_mechanism": greeting(mechanism=b""),
    "null_then_garbage": OURS[:20] + b"X" + OURS[21:],
    "zmtp_2": b"\xff" + bytes(7) + b"\x01\x7f\x01\x05",
    "zmtp_1": b"\xff" + bytes(8) + b"\x02",
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "truncated_10": OURS[:10],
    "truncated_40": OURS[:40],
    "ours_then_ready": OURS + command(b"READY", READY_PAIR),
}

# Frame decoder seeds: wire bytes; each is written with a few input headers.
STREAMS = {
    "message": message(b"hello"),
    "empty_frame": message(b""),
    "multipart": message(b"key", b"", b"value"),
    "long_frame": message(bytes(range(256)) + bytes(44)),
    "multipart_long": message(b"id", b"", b"x" * 1000),
    "long_header_short_size": long_(0x00, b"abc"),
    "ping": command(b"PING", b"\x00\x64ctx"),
    "pong": command(b"PONG", b"ctx"),
    "subscribe": command(b"SUBSCRIBE", b"weather."),
    "cancel": command(b"CANCEL", b"weather."),
    "error": command(b"ERROR", b"\x02no"),
    "ready": command(b"READY", READY_DEALER),
    "unknown_command": command(b"JOIN", b"group"),
    "long_command": command(b"SUBSCRIBE", b"t" * 300),
    "mixed": message(b"a", b"b")
    + command(b"PING", b"\x00\x01")
    + message(b"c")
    + command(b"PONG")
    + message(b"z" * 256),
    "truncated_between_frames": message(b"a", b"b")[:3],
    "truncated_long_header": long_(0x00, b"x" * 300)[:5],
    "truncated_body": message(b"hello world")[:6],
    "bad_reserved_flags": b"\x08\x00",
    "bad_command_with_more": b"\x05\x05\x04PING",
    "bad_command_inside_message": b"\x01\x01a" + command(b"PING", b"\x00\x00"),
    "bad_huge_frame": b"\x02\x40" + bytes(7),
    "bad_huge_command": b"\x06" + b"\xff" * 8,
    "bad_command_too_large": b"\x06" + struct.pack(">Q", (64 << 10) + 1),
    "bad_ping_17_context": command(b"PING", b"\x00\x00" + b"seventeen bytes!!"),
    "bad_empty_command": b"\x04\x00",
}

# count, limit (big-endian, 0xFFFF = default), piece-size bytes.
DECODER_HEADERS = {
    "bytewise": b"\x00\xff\xff",
    "pieces_3_7": b"\x02\xff\xff\x02\x06",
    "whole_limit_100": b"\x01\x00\x64\xff",
}

# mode (bit 0: prepend our greeting), our socket type index, piece size byte.
PAIR, ROUTER, PUSH = 10, 3, 8
HANDSHAKES = {
    "pair_ready": (1, PAIR, 0xFF, command(b"READY", READY_PAIR)),
    "pair_ready_bytewise": (1, PAIR, 0, command(b"READY", READY_PAIR)),
    "raw_pair_ready": (0, PAIR, 9, OURS + command(b"READY", READY_PAIR)),
    "raw_zmtp_3_0": (0, PAIR, 63, greeting(minor=0) + command(b"READY", READY_PAIR)),
    "router_dealer_identity": (1, ROUTER, 0xFF, command(b"READY", READY_DEALER)),
    "ready_then_traffic": (
        1,
        PAIR,
        4,
        command(b"READY", READY_PAIR) + message(b"hi", b"there") + command(b"PING", b"\x00\x00"),
    ),
    "error_instead_of_ready": (1, PAIR, 0xFF, command(b"ERROR", b"\x02no")),
    "ping_instead_of_ready": (1, PAIR, 0xFF, command(b"PING", b"\x00\x00")),
    "message_before_ready": (1, PAIR, 0xFF, message(b"hi")),
    "incompatible_push_push": (1, PUSH, 0xFF, command(b"READY", prop(b"Socket-Type", b"PUSH"))),
    "missing_socket_type": (1, PAIR, 0xFF, command(b"READY")),
    "unknown_socket_type": (1, PAIR, 0xFF, command(b"READY", prop(b"Socket-Type", b"PEER"))),
    "lower_case_socket_type": (1, PAIR, 0xFF, command(b"READY", prop(b"Socket-Type", b"pair"))),
    "command_too_large": (1, PAIR, 0xFF, b"\x06" + struct.pack(">Q", (64 << 10) + 1)),
    "truncated_ready": (1, PAIR, 0xFF, b"\x04\x10\x05READY\x0bSocket-Ty"),
    "raw_plain": (0, PAIR, 0xFF, greeting(mechanism=b"PLAIN")),
    "raw_http": (0, PAIR, 0xFF, b"GET / HTTP/1.1\r\n\r\n"),
}


# pattern_state: 3 bytes of heartbeat configuration (x 10 ms: interval, timeout,
# TTL), then opcodes (% 10) with their argument bytes. Written from the opcode
# table in fuzz_targets/pattern_state.rs.
def sub(peer, topic):
    return bytes([0, peer, len(topic)]) + bytes(b"ab\0".index(c) for c in topic)


def cancel(peer, topic):
    return bytes([1, peer, len(topic)]) + bytes(b"ab\0".index(c) for c in topic)


def publish(topic):
    return bytes([3, len(topic)]) + bytes(b"ab\0".index(c) for c in topic) + bytes([0])


def msg(*frames):
    out = bytes([len(frames) - 1])
    for f in frames:
        out += bytes([len(f)]) + f
    return out


PATTERN_STATE = {
    # XPUB: two subscribers share a topic; counted subscriptions; one leaves.
    "subscriptions": bytes(3)
    + sub(0, b"a") + sub(1, b"a") + sub(0, b"a") + sub(2, b"")
    + publish(b"ab") + cancel(0, b"a") + publish(b"a") + bytes([2, 1])
    + cancel(2, b"") + cancel(3, b"b") + publish(b"b") + cancel(0, b"a"),
    # REQ -> two ROUTERs -> REP and back, correlated and not; stray messages.
    "request_reply": bytes(3)
    + bytes([4, 2, 1, 7]) + msg(b"hi", b"") + msg(b"ok")
    + bytes([4, 0, 0]) + msg(b"") + msg(b"", b"x")
    + bytes([5]) + msg(b"id", b"", b"body")
    + bytes([5]) + msg(b"no", b"delim"),
    # Heartbeat 100 ms / 200 ms / TTL 1 s: pings, traffic, then silence to expiry.
    "heartbeat": bytes([10, 20, 100])
    + bytes([6, 20, 9, 7, 6, 30, 8, 5, 9, 9, 9, 9]),
    # No heartbeat of ours, but the peer asks for a TTL of 0.3 s.
    "peer_ttl": bytes([0, 0, 0]) + bytes([8, 3, 6, 50, 6, 20, 9]),
}


# Attachment headers (crates/conduit/src/fd_passing.rs): version 1, user
# descriptors u8, ledger u8, shared frames u16, then per shared frame index u32,
# offset u64, length u64, slot u32, big-endian. NO_SLOT is 0xFFFFFFFF.
NO_SLOT = 0xFFFFFFFF


def attach_header(user, ledger, shared):
    out = bytes([1, user, ledger]) + struct.pack(">H", len(shared))
    for index, offset, length, slot in shared:
        out += struct.pack(">IQQI", index, offset, length, slot)
    return out


# Descriptor kinds of the attachments target: 0 pooled region, 1 sealed fresh
# region, 2 unsealed memfd, 3 pipe, 4 a ledger-sized pooled region.
def fd(kind, size=0):
    return bytes([kind]) + struct.pack(">H", size)


def attach_input(frame_lens, max_kib, fds, header):
    return bytes([len(frame_lens), max_kib - 1, len(fds)]) + b"".join(fds) + bytes(frame_lens) + header


ATTACHMENTS = {
    "nothing": attach_input([], 1, [], attach_header(0, 0, [])),
    "one_user_fd": attach_input([3], 1, [fd(3)], attach_header(1, 0, [])),
    "pooled_with_ledger": attach_input(
        [0], 8, [fd(4), fd(0, 4096)], attach_header(0, 1, [(0, 0, 4096, 3)])
    ),
    "fresh_at_offset": attach_input(
        [2, 0], 16, [fd(1, 8192)], attach_header(0, 0, [(1, 100, 5000, NO_SLOT)])
    ),
    "user_ledger_two_pooled": attach_input(
        [0, 1, 0],
        64,
        [fd(3), fd(4), fd(0, 20000), fd(0, 4096)],
        attach_header(1, 1, [(0, 0, 20000, 0), (2, 4000, 96, 1021)]),
    ),
    # Refused: the region is not sealed; the frame runs past its region.
    "unsealed": attach_input([0], 8, [fd(2, 4096)], attach_header(0, 0, [(0, 0, 10, NO_SLOT)])),
    "past_the_end": attach_input([0], 8, [fd(1, 4096)], attach_header(0, 0, [(0, 4000, 200, NO_SLOT)])),
}

# Typed values (fuzz/fuzz_targets/typed_value.rs), in postcard's format by hand:
# Value { id: u32 varint, tree: Tree (variant index varint, then its fields),
# tail: Option<(char, i8)> }. Tree's variants in order: Unit, Flag, Number,
# Signed, Text, Bytes, Node, Maybe, Map, Pair, Named.
TYPED_VALUES = {
    "unit": bytes([1, 0, 0]),
    "text_and_tail": bytes([0xAC, 0x02, 4, 2]) + b"hi" + bytes([1]) + b"a" + bytes([0xFF]),
    "node": bytes([7, 6, 2, 2, 5, 1, 1, 0]),
    "maybe": bytes([0, 7, 1, 7, 0, 0]),
    "map": bytes([0, 8, 2, 1, 0, 2, 3, 0x10, 0]),
    "pair_named": bytes([0, 9, 10]) + b"x" + bytes([0, 3, 0x7F, 0]),
    "bytes_signed": bytes([0, 5, 3, 1, 2, 3, 0]),
    # Nested far past the bound: Maybe(Some(Maybe(Some(...)))).
    "deep": bytes([0]) + bytes([7, 1]) * 400 + bytes([0, 0]),
}


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for name, data in COMMAND_BODIES.items():
        write("command", name, data)
    for name, data in PROPERTIES.items():
        write("ready_properties", name, data)
    for name, data in GREETINGS.items():
        write("greeting", name, data)
    for name, wire in STREAMS.items():
        for hname, header in DECODER_HEADERS.items():
            # Keep the corpus small: every stream bytewise, a few more ways.
            if hname == "bytewise" or name in ("mixed", "multipart_long", "long_frame", "bad_huge_frame"):
                write("frame_decoder", f"{name}-{hname}", header + wire)
    for name, (mode, local, piece, peer) in HANDSHAKES.items():
        write("handshake", name, bytes([mode, local, piece]) + peer)
    # encoders decodes its input with `arbitrary`: any bytes are a valid input,
    # so a few varied byte strings are enough to start from.
    for name in ("mixed", "ready", "multipart_long"):
        write("encoders", name, STREAMS[name])
    for name, data in PATTERN_STATE.items():
        write("pattern_state", name, data)
    for name, data in ATTACHMENTS.items():
        write("attachments", name, data)
    for name, data in TYPED_VALUES.items():
        write("typed_value", name, data)


if __name__ == "__main__":
    main()
