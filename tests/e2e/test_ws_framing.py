"""RFC 6455 framing at the gateway, byte by byte, from a raw socket: the
gateway reads whole masked text frames that start a read itself and hands
everything else (frames cut across reads, fragments, control frames, bad
frames) to wslay. Each case here lands on one side or the other of that
line, or crosses it, and must be answered exactly as any client expects."""

import base64
import json
import os
import socket
import struct
import time

PING = json.dumps({"t": "ping"}).encode()


def frame(payload, opcode=0x1, fin=True, mask=True, rsv=0):
    """A client frame (masked unless told otherwise)."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


class RawWs:
    def __init__(self, live, user):
        self.s = socket.create_connection(("127.0.0.1", int(live.http("gw1").rsplit(":", 1)[1])), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (
            "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {live.token(user)}\r\n\r\n"
        )
        self.s.sendall(req.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        op, hello = self.next()
        assert op == 0x1 and json.loads(hello)["t"] == "hello", hello

    def _recv(self):
        data = self.s.recv(65536)
        if not data:
            raise EOFError("the gateway closed the connection")
        return data

    def _need(self, n):
        while len(self.buf) < n:
            self.buf += self._recv()

    def next(self):
        """The next server frame as (opcode, payload); server frames are
        never masked."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        assert b1 & 0x80 == 0, "a server frame must not be masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n)
        payload, self.buf = self.buf[off : off + n], self.buf[off + n :]
        return b0 & 0x0F, payload

    def texts(self, count):
        out = []
        while len(out) < count:
            op, payload = self.next()
            if op == 0x1:
                out.append(json.loads(payload))
        return out

    def close_code(self):
        while True:
            op, payload = self.next()
            if op == 0x8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def send(self, data, pause=0.0):
        self.s.sendall(data)
        if pause:
            time.sleep(pause)

    def close(self):
        self.s.close()


def test_frames_within_and_across_reads_are_all_answered(live, name):
    ws = RawWs(live, name("raw"))
    try:
        # Several whole frames in one segment.
        ws.send(frame(PING) * 3)
        assert [f["t"] for f in ws.texts(3)] == ["pong"] * 3
        # A frame cut across two reads, then a whole one with the rest of
        # another: every byte boundary is someone's.
        f1, f2, f3 = frame(PING), frame(PING), frame(PING)
        ws.send(f1[:5], pause=0.2)
        ws.send(f1[5:] + f2 + f3[:3], pause=0.2)
        ws.send(f3[3:])
        assert [f["t"] for f in ws.texts(3)] == ["pong"] * 3
        # A fragmented message: text without FIN, then a continuation.
        ws.send(frame(PING[:4], fin=False) + frame(PING[4:], opcode=0x0))
        assert ws.texts(1)[0]["t"] == "pong"
        # A control frame between data frames: WebSocket ping -> pong.
        ws.send(frame(PING) + frame(b"hi", opcode=0x9) + frame(PING))
        seen = []
        while len(seen) < 3:
            op, payload = ws.next()
            seen.append((op, payload if op == 0xA else json.loads(payload)["t"]))
        assert sorted(seen, key=str) == sorted([(0x1, "pong"), (0xA, b"hi"), (0x1, "pong")], key=str)
        # A 16-bit length (126) frame of valid multi-byte UTF-8.
        big = json.dumps({"t": "ping", "pad": "é" * 300}, ensure_ascii=False).encode()
        assert 125 < len(big) < 65536
        ws.send(frame(big))
        assert ws.texts(1)[0]["t"] == "pong"
    finally:
        ws.close()


def test_bad_frames_close_the_connection_as_the_rfc_says(live, name):
    cases = [
        (frame(b'{"t":"ping","x":"\xff\xfe"}'), 1007),  # invalid UTF-8 in a text frame
        (frame(PING, opcode=0x2), 1003),  # binary
        (frame(PING, mask=False), 1002),  # a client frame must be masked
        (frame(PING, rsv=0x40), 1002),  # RSV1 without an extension
    ]
    for data, want in cases:
        ws = RawWs(live, name("raw"))
        try:
            # A good frame first in the same segment: it is answered, then
            # the bad one closes.
            ws.send(frame(PING) + data)
            assert ws.texts(1)[0]["t"] == "pong"
            assert ws.close_code() == want, (data[:2], want)
        finally:
            ws.close()
