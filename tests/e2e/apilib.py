"""Helpers for the tests of the product surface (issue 4): the HTTP API of
docs/api.md, gateways started by one test with their own limits, and a few
looks at Redis and at the WebSocket byte stream that the shared helpers in
chatlib.py do not need.

Nothing here is mocked: requests go to real gateways, a dedicated gateway is
the same sanitizer build as the session's gw1/gw2, started with conftest's
argv plus the flags a test needs, and stopped by the `gateways` fixture.

A test uses the fixture by importing it:  from apilib import gateways
"""

import asyncio
import base64
import http.client
import json
import os
import random
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest

import chatlib
from chatlib import ChatSocket
from conftest import KAFKA, MONGO_URI, REDIS_HOST, REDIS_PORT, Proc, _hostport

# Argon2id at libsodium's interactive memory (64 MiB) under ASan is slow; a
# gateway started by a test hashes with the smallest memory it accepts.
FAST_HASH = ("--pwhash-mem-kib", "8192")


# ---------------------------------------------------------------- addresses


def free_port():
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_address():
    """A random loopback address other than 127.0.0.1. Linux answers the
    whole of 127/8 on `lo`, so a client bound to it reaches a gateway on
    127.0.0.1 as a distinct client address: the per-address login counter
    of one test is then its own, whatever other tests did this minute."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


# ---------------------------------------------------------------- HTTP


def request(base, method, path, body=None, token=None, *, raw=None, source=None, headers=None, timeout=60.0):
    """One HTTP request on a fresh connection; returns (status, parsed JSON
    or text). `raw` sends bytes as they are instead of JSON; `source` binds
    the client to that local address."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout, source_address=(source, 0) if source else None)
    hdrs = {"Accept": "application/json"}
    data = None
    if raw is not None:
        data = raw
        hdrs["Content-Type"] = "application/json"
    elif body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = "Bearer " + token
    hdrs.update(headers or {})
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        status, text = resp.status, resp.read().decode("utf-8", errors="replace")
    finally:
        conn.close()
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def error_code(body):
    """The `code` of an error answer, or None when it has not the one shape
    docs/api.md gives every error."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and set(body) == {"error"}:
        err = body["error"]
        if isinstance(err.get("code"), str) and isinstance(err.get("message"), str):
            return err["code"]
    return None


class Api:
    """The HTTP API of one gateway (docs/api.md). Every method returns
    (status, body); nothing raises on an error status."""

    def __init__(self, base, source=None):
        self.base = base
        self.source = source

    def call(self, method, path, body=None, token=None, **kw):
        kw.setdefault("source", self.source)
        return request(self.base, method, path, body, token, **kw)

    # accounts
    def register(self, user, password):
        return self.call("POST", "/v1/register", {"username": user, "password": password})

    def login(self, user, password):
        return self.call("POST", "/v1/login", {"username": user, "password": password})

    def refresh(self, token):
        return self.call("POST", "/v1/token", token=token)

    def me(self, token):
        return self.call("GET", "/v1/me", token=token)

    # conversations
    def create(self, token, members, kind=None, title=None):
        body = {"members": list(members)}
        if kind is not None:
            body["kind"] = kind
        if title is not None:
            body["title"] = title
        return self.call("POST", "/v1/conversations", body, token)

    def conversations(self, token):
        return self.call("GET", "/v1/conversations", token=token)

    def add_member(self, token, conv, user):
        return self.call("POST", f"/v1/conversations/{conv}/members", {"user": user}, token)

    def remove_member(self, token, conv, user):
        return self.call("DELETE", f"/v1/conversations/{conv}/members/{user}", token=token)

    def delete(self, token, conv):
        return self.call("DELETE", f"/v1/conversations/{conv}", token=token)

    def history(self, token, conv, before=None, limit=None, query=None):
        q = query
        if q is None:
            params = [(k, v) for k, v in (("before", before), ("limit", limit)) if v is not None]
            q = urllib.parse.urlencode(params)
        return self.call("GET", f"/v1/conversations/{conv}/messages" + (f"?{q}" if q else ""), token=token)

    def presence(self, token, users):
        return self.call("GET", "/v1/presence?users=" + ",".join(users), token=token)

    def listed(self, token):
        """GET /v1/conversations as {id: entry}; fails on any other answer."""
        status, body = self.conversations(token)
        assert status == 200 and isinstance(body, dict), (status, body)
        return {c["id"]: c for c in body["conversations"]}


def jwt_payload(token):
    """The claims of a JWT, unverified (the gateway verifies; tests read)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def metric(base, name):
    """The value of chat_gateway_<name> on that gateway's /metrics."""
    status, text = request(base, "GET", "/metrics")
    assert status == 200, (status, text)
    m = re.search(rf"^chat_gateway_{name}{{[^}}]*}} (\d+)$", text, re.M)
    assert m, f"chat_gateway_{name} not in /metrics:\n{text}"
    return int(m.group(1))


# ---------------------------------------------------------------- Redis


def redis_command(*args, host=REDIS_HOST, port=REDIS_PORT):
    """Sends one command to the test stack's Redis and returns the decoded
    reply (RESP2: ints, bytes, lists, None). Enough for HLEN and friends."""
    out = b"".join([f"*{len(args)}\r\n".encode()] + [f"${len(a)}\r\n".encode() + a + b"\r\n" for a in (str(x).encode() for x in args)])
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(out)
        f = s.makefile("rb")
        return _resp(f)


def _resp(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp(f) for _ in range(n)]
    raise RuntimeError(f"redis: unexpected reply {line!r}")


def live_connections(user):
    """How many connections the user's presence hash holds (docs/design.md:
    one field per connection)."""
    return redis_command("HLEN", f"presence:{user}")


# ---------------------------------------------------------------- Kafka


def dead_letters(conv):
    """The dead letters of conv in the consumers' dead-letter topic, as
    [(original envelope, {header: value})] in partition order. An event the
    consumer refused lands there with a `reason` header (docs/protocol.md),
    so its presence proves the consumer has handled that event."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing (scripts/deps.sh installs it)"
    topic = os.environ.get("CHAT_DLQ_TOPIC", "chat.events.dlq")
    out = subprocess.run(
        [kcat, "-C", "-b", KAFKA, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\x1f%h\x1f%s\x1e"],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    found = []
    for rec in out.stdout.split(b"\x1e"):
        parts = rec.split(b"\x1f", 2)
        if len(parts) != 3 or parts[0].decode(errors="replace") != conv:
            continue
        headers = {}
        for h in parts[1].decode(errors="replace").split(","):
            k, _, v = h.partition("=")
            headers[k] = v
        found.append((json.loads(parts[2]), headers))
    return found


def dead_letter(conv, event_id):
    """The (envelope, headers) of that event in the dead-letter topic, or None."""
    return next(((e, h) for e, h in dead_letters(conv) if e.get("id") == event_id), None)


# ---------------------------------------------------------------- a store that stalls


class HoldingRelay:
    """Relays TCP connections to (host, port), as a store that stalls: hold()
    keeps every byte that arrives from a client until release(); `held`
    counts the chunks that waited (a client is blocked on the store)."""

    @classmethod
    def to_store(cls):
        """A relay to the test stack's store; .store_uri(query) names the
        same database through it."""
        host, port = _hostport(MONGO_URI.split("//", 1)[1].split("/", 1)[0])
        return cls(host, port)

    def store_uri(self, query=""):
        return f"mongodb://127.0.0.1:{self.port}/{MONGO_URI.rsplit('/', 1)[1]}{query}"

    def __init__(self, host, port):
        self.upstream = (host, port)
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        self.held = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src, dst, to_store):
        try:
            while not self.closed:
                r, _, _ = select.select([src], [], [], 0.5)
                if not r:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                if to_store and not self.flowing.is_set():
                    self.held += 1
                while to_store and not self.flowing.wait(0.5):
                    if self.closed:
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def hold(self):
        self.flowing.clear()

    def release(self):
        self.flowing.set()

    def close(self):
        self.closed = True
        self.flowing.set()
        self.listener.close()
        for s in self.socks:
            s.close()


# ---------------------------------------------------------------- dedicated gateways


class Gateway:
    """A gateway a test started, with its own flags."""

    def __init__(self, proc, gid, port):
        self.proc = proc
        self.gid = gid
        self.port = port
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}/v1/ws"

    @property
    def pid(self):
        return self.proc.popen.pid

    def api(self, source=None):
        return Api(self.http, source)

    def rss_kib(self):
        """VmRSS of the gateway process, KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")


class Gateways:
    """Starts gateways with extra flags against the session's stack (same
    secret, brokers, Redis and MongoDB as gw1/gw2, so tokens, conversations
    and routing are shared) and stops them all at the end of the test."""

    def __init__(self, stack):
        self.stack = stack
        self.started = []

    def start(self, *flags, label="gx", timeout=60, env=None):
        port = free_port()
        gid = f"{label}-{uuid.uuid4().hex[:6]}"
        argv = self.stack._gateway_argv(gid, port) + [str(f) for f in flags]
        proc = Proc(gid, argv, dict(self.stack.env, **(env or {})))
        proc.start()
        gw = Gateway(proc, gid, port)
        self.started.append(gw)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if not proc.alive():
                raise RuntimeError(f"gateway {gid} {flags} exited (code {proc.popen.returncode}):\n{proc.tail()}")
            try:
                status, body = chatlib.http_json("GET", gw.http + "/v1/health", timeout=2)
                if status == 200 and body == {"status": "ok", "gateway": gid}:
                    return gw
                last = (status, body)
            except OSError as e:
                last = e
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway {gid} not healthy within {timeout}s (last {last!r}):\n{proc.tail()}")
            time.sleep(0.2)

    def forget(self, gw):
        """The test stops this one itself (its exit is not a death)."""
        self.started.remove(gw)

    def stop_all(self):
        died = [gw for gw in self.started if not gw.proc.alive()]
        for gw in self.started:
            gw.proc.stop()
        return died


@pytest.fixture
def gateways(live):
    """gateways.start(*flags) -> Gateway: a gateway of this test alone,
    stopped when the test ends. A gateway that died during the test fails
    it (with its log's tail)."""
    g = Gateways(live)
    yield g
    died = g.stop_all()
    assert not died, "\n".join(f"{gw.gid} died (code {gw.proc.popen.returncode}), log {gw.proc.log}:\n{gw.proc.tail()}" for gw in died)


async def connect(clients, gw, user, ready=True, label=None, **kw):
    """Like Clients.connect, for a dedicated gateway: a ChatSocket kept in
    `clients` (closed and schema-checked at the end). With ready=True it
    syncs, so the connection's presence is registered before it returns."""
    sock = await ChatSocket.connect(
        gw.ws, clients.stack.token(user), validator=clients.stack.server_validator, label=label or f"{user}@{gw.gid}", **kw
    )
    clients.sockets.append(sock)
    if sock.hello is not None:
        assert sock.hello.get("user") == user and sock.hello.get("gw") == gw.gid, sock.hello
    if ready:
        await sock.sync()
    return sock


# ---------------------------------------------------------------- frames


def of_type(t, conv=None, **fields):
    """A predicate for wait_for: frame type t, in conv, with these fields."""

    def pred(f):
        return f.get("t") == t and (conv is None or f.get("conv") == conv) and all(f.get(k) == v for k, v in fields.items())

    return pred


def count(sock, t, conv=None, **fields):
    return sum(1 for f in sock.frames if of_type(t, conv, **fields)(f))


async def answer_to(sock, cid, timeout=chatlib.WAIT):
    """The `sent` or `error` frame that answers the frame with this cid."""
    return await sock.wait_for(lambda f: f.get("t") in ("sent", "error") and f.get("cid") == cid, timeout, f"the answer to cid {cid}")


# ---------------------------------------------------------------- raw WebSocket


class RawWebSocket:
    """A WebSocket client on a bare non-blocking socket: the handshake by
    hand, frames parsed from the bytes. Nothing reads the socket unless the
    test calls read_some (an asyncio stream would keep reading into its own
    buffer), which is what a client too slow for its gateway looks like."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.error = None

    @classmethod
    async def connect(cls, port, token, rcvbuf=None, timeout=chatlib.WAIT):
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Set before connect, so the window it advertises stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        ws = cls(sock)
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in ws.buf:
            if not await ws.read_some(max(0.05, deadline - time.monotonic())) or time.monotonic() > deadline:
                raise AssertionError(f"no upgrade answer: {ws.buf[:300]!r}")
        head, ws.buf = ws.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101 "):
            raise AssertionError(f"upgrade refused: {head!r}")
        return ws

    async def read_some(self, timeout):
        """Reads what arrives within timeout into buf; False at EOF/reset."""
        if self.eof:
            return False
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), timeout)
        except asyncio.TimeoutError:
            return True
        except OSError as e:  # reset
            self.error = e
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def frames(self):
        """(opcode, payload) of every whole frame in buf (server frames are
        never masked)."""
        out = []
        i, b = 0, self.buf
        while len(b) - i >= 2:
            op, l7 = b[i] & 0x0F, b[i + 1] & 0x7F
            h = 2
            if l7 == 126:
                if len(b) - i < 4:
                    break
                n, h = int.from_bytes(b[i + 2 : i + 4], "big"), 4
            elif l7 == 127:
                if len(b) - i < 10:
                    break
                n, h = int.from_bytes(b[i + 2 : i + 10], "big"), 10
            else:
                n = l7
            if len(b) - i < h + n:
                break
            out.append((op, b[i + h : i + h + n]))
            i += h + n
        return out

    def texts(self):
        return [json.loads(p) for op, p in self.frames() if op == 0x1]

    def close_code(self):
        """The code of the close frame the server sent, if one arrived."""
        for op, p in self.frames():
            if op == 0x8:
                return int.from_bytes(p[:2], "big") if len(p) >= 2 else 1005
        return None

    async def wait_text(self, pred, timeout=chatlib.WAIT):
        deadline = time.monotonic() + timeout
        while True:
            for f in self.texts():
                if pred(f):
                    return f
            if self.eof or time.monotonic() > deadline:
                raise AssertionError(f"no such frame (eof={self.eof}); frames: {self.texts()[-5:]}")
            await self.read_some(max(0.05, deadline - time.monotonic()))

    async def drain_until_closed(self, timeout=chatlib.WAIT):
        """Reads until EOF or reset; returns True when the peer ended it."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            await self.read_some(max(0.05, deadline - time.monotonic()))
        return self.eof

    def close(self):
        self.sock.close()
