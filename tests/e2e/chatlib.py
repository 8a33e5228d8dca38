"""Client-side helpers shared by the end-to-end tests and scripts/chat-cli.py.

Everything here speaks to the real gateways: tokens are minted with the
shared HS256 secret (stdlib hmac), HTTP goes through urllib, and WebSockets
through the `websockets` package, an implementation independent of the
gateway's wslay. Nothing is mocked.

Waiting is always bounded and never the reason a test passes: a helper waits
until a condition holds, and fails with what it saw when the bound (30 s by
default) runs out.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

try:  # the CLI can run without the test-only packages
    import websockets
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus
except ImportError:  # pragma: no cover
    websockets = None

WAIT = 30.0  # the default bound of every wait, in seconds


# ---------------------------------------------------------------- tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_token(sub, secret, ttl=3600, *, now=None, iat=None, exp=None, alg="HS256", claims=None):
    """Returns a JWT for user `sub`. By default a valid HS256 token {sub, iat,
    exp}; the keywords make the broken ones the tests need (alg="none", an
    `exp` in the past, another secret)."""
    now = int(time.time()) if now is None else int(now)
    payload = {"sub": sub, "iat": now if iat is None else iat, "exp": now + ttl if exp is None else exp}
    if claims:
        payload.update(claims)
    header = {"alg": alg, "typ": "JWT"}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(payload, separators=(",", ":")).encode())
    )
    if alg == "none":
        return signing_input + "."
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


# ---------------------------------------------------------------- HTTP


def ws_to_http(url):
    """ws://host:port/... -> http://host:port"""
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0]
    return ("https" if scheme == "wss" else "http") + "://" + host


def http_json(method, url, body=None, token=None, timeout=10.0, headers=None):
    """Makes one HTTP request and returns (status, parsed JSON or raw text).
    HTTP error statuses are returned, not raised."""
    data = None
    hdrs = {"Accept": "application/json"}
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = "Bearer " + token
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def create_conversation(base, token, members, kind=None, title=None):
    """POST /v1/conversations; returns the conversation object
    {"id", "kind", "members"}. Raises AssertionError on any other answer."""
    body = {"members": list(members)}
    if kind:
        body["kind"] = kind
    if title:
        body["title"] = title
    status, obj = http_json("POST", base + "/v1/conversations", body, token=token)
    if status not in (200, 201) or not isinstance(obj, dict) or "id" not in obj:
        raise AssertionError(f"POST /v1/conversations {body} -> {status} {obj!r}")
    return obj


# ---------------------------------------------------------------- waiting


async def wait_until(fn, timeout=WAIT, what="a condition", interval=0.2):
    """Calls fn (in a thread: it may block, e.g. on MongoDB) until it returns
    something truthy, and returns that. Fails after `timeout` seconds with
    fn's last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = await asyncio.to_thread(fn)
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


def run(coro, timeout=600):
    """Runs a test's coroutine on a fresh event loop, bounded."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# ---------------------------------------------------------------- schemas


class FrameValidator:
    """Checks frames against one of schemas/*.json. A frame whose `t` names
    one of the schema's alternatives is checked against that alternative
    alone, so the errors say what is wrong rather than "not valid under any
    of the given schemas". Needs the jsonschema package."""

    def __init__(self, path):
        from jsonschema import Draft202012Validator

        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        Draft202012Validator.check_schema(schema)
        self.whole = Draft202012Validator(schema)
        self.by_type = {}
        for alt in schema.get("oneOf", []):
            name = alt["$ref"].rsplit("/", 1)[1]
            t = schema["$defs"][name].get("properties", {}).get("t", {}).get("const")
            if t is not None:
                sub = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": alt["$ref"]}
                self.by_type[t] = Draft202012Validator(sub)

    @property
    def types(self):
        return set(self.by_type)

    def errors(self, frame):
        """Returns a list of messages, empty when frame is valid."""
        v = self.by_type.get(frame.get("t")) if isinstance(frame, dict) else None
        v = v or self.whole
        return [f"{'/'.join(map(str, e.absolute_path)) or '(frame)'}: {e.message}" for e in v.iter_errors(frame)]


# ---------------------------------------------------------------- WebSocket


class ChatError(Exception):
    """The gateway answered a frame with an error frame."""

    def __init__(self, frame):
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.frame = frame
        self.code = frame.get("code")


class Rejected(Exception):
    """The WebSocket upgrade was refused; status and body say how."""

    def __init__(self, status, body):
        super().__init__(f"upgrade refused with HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class ChatSocket:
    """One client connection. A background task reads every frame as it
    arrives (so a test that is busy elsewhere never makes the gateway think
    the client is slow) into `frames` (everything, in order) and `inbox` (not
    yet taken by wait_for). Each frame is checked against the server schema
    when a validator (FrameValidator) is given; mismatches are kept in
    `invalid`."""

    def __init__(self, ws, url, validator=None, label=""):
        self.ws = ws
        self.url = url
        self.label = label
        self.validator = validator
        self.frames = []
        self.inbox = []
        self.invalid = []
        self.closed = False
        self.close_code = None  # the code of the close frame the server sent
        self.close_reason = None
        self.hello = None
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url, token=None, *, query_token=False, validator=None, label="", wait_hello=True, timeout=WAIT):
        if websockets is None:
            raise RuntimeError("the websockets package is missing (scripts/deps.sh installs it)")
        headers = {}
        if token and query_token:
            url += ("&" if "?" in url else "?") + "token=" + token
        elif token:
            headers["Authorization"] = "Bearer " + token
        try:
            ws = await ws_connect(
                url,
                additional_headers=headers,
                compression=None,  # the gateway speaks plain RFC 6455 frames
                open_timeout=timeout,
                max_size=4 * 1024 * 1024,
                max_queue=None,
                proxy=None,  # loopback: never through an HTTP proxy from the environment
            )
        except InvalidStatus as e:
            raise Rejected(e.response.status_code, e.response.body) from None
        sock = cls(ws, url, validator, label)
        if wait_hello:
            sock.hello = await sock.wait_for(lambda f: f.get("t") == "hello", timeout, "hello")
        return sock

    @property
    def conn(self):
        return self.hello.get("conn") if self.hello else None

    async def _read(self):
        try:
            async for msg in self.ws:
                if isinstance(msg, bytes):
                    self.invalid.append(("binary frame", msg[:80]))
                    continue
                try:
                    frame = json.loads(msg)
                except ValueError:
                    self.invalid.append(("not JSON", msg[:200]))
                    continue
                if self.validator is not None:
                    errs = self.validator.errors(frame)
                    if errs:
                        self.invalid.append((errs[0], frame))
                self.frames.append(frame)
                self.inbox.append(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            rcvd = getattr(self.ws.protocol, "close_rcvd", None)
            self.close_code = rcvd.code if rcvd is not None else None
            self.close_reason = rcvd.reason if rcvd is not None else None
            self.closed = True
            self._changed.set()

    def _describe(self):
        tail = self.frames[-5:]
        state = f"closed (code {self.close_code})" if self.closed else "open"
        return f"[{self.label or self.url}] {state}, {len(self.frames)} frames, last: {tail}"

    async def _wait_change(self, deadline, what):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what}; {self._describe()}")
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), remaining)
        except asyncio.TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; {self._describe()}") from None

    async def wait_for(self, pred, timeout=WAIT, what="a frame"):
        """Takes the first frame of the inbox for which pred holds (other
        frames stay), receiving more as needed. Fails on timeout or close."""
        deadline = time.monotonic() + timeout
        while True:
            for i, f in enumerate(self.inbox):
                if pred(f):
                    del self.inbox[i]
                    return f
            if self.closed:
                raise AssertionError(f"connection closed while waiting for {what}; {self._describe()}")
            await self._wait_change(deadline, what)

    async def wait_state(self, check, timeout=WAIT, what="a state"):
        """Waits until check() (which looks at self.frames) returns something
        truthy, and returns it."""
        deadline = time.monotonic() + timeout
        while True:
            r = check()
            if r:
                return r
            if self.closed:
                raise AssertionError(f"connection closed while waiting for {what}; {self._describe()}")
            await self._wait_change(deadline, what)

    async def wait_closed(self, timeout=WAIT):
        """Waits until the server closed the connection; returns its code."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            await self._wait_change(deadline, "the server to close the connection")
        return self.close_code

    async def send(self, frame):
        await self.ws.send(json.dumps(frame, separators=(",", ":")))

    async def send_raw(self, text):
        await self.ws.send(text)

    async def send_message(self, conv, body, cid, timeout=WAIT):
        """Sends one message and returns its `sent` frame. A retryable error
        (rate_limited, unavailable) is retried with the same cid, which the
        protocol makes safe; any other error raises ChatError."""
        deadline = time.monotonic() + timeout
        backoff = 0.1
        while True:
            await self.send({"t": "send", "conv": conv, "cid": cid, "body": body})
            f = await self.wait_for(
                lambda f: f.get("t") in ("sent", "error") and f.get("cid") == cid,
                max(0.1, deadline - time.monotonic()),
                f"sent for cid {cid}",
            )
            if f["t"] == "sent":
                return f
            if not f.get("retry") or time.monotonic() + backoff > deadline:
                raise ChatError(f)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def sync(self, have=None, timeout=WAIT):
        """Sends sync and waits for `synced`; returns (message frames that
        arrived between the two, the synced frame)."""
        start = len(self.frames)
        frame = {"t": "sync", "have": dict(have or {})}
        await self.send(frame)
        synced = await self.wait_for(lambda f: f.get("t") == "synced", timeout, "synced")
        end = self.frames.index(synced, start)
        msgs = [f for f in self.frames[start:end] if f.get("t") == "message"]
        return msgs, synced

    def messages(self, conv):
        """Every message of conv this socket received, one per seq (live and
        sync may both bring one; they must agree)."""
        by_seq = {}
        for f in self.frames:
            if f.get("t") == "message" and f.get("conv") == conv:
                seen = by_seq.setdefault(f["seq"], f)
                if seen["id"] != f["id"]:
                    raise AssertionError(f"seq {f['seq']} of {conv} arrived as two events: {seen} and {f}")
        return by_seq

    def max_contiguous(self, conv):
        """The highest seq n such that 1..n all arrived (what `have` says)."""
        seqs = self.messages(conv)
        n = 0
        while n + 1 in seqs:
            n += 1
        return n

    async def wait_messages(self, conv, count, timeout=WAIT):
        """Waits until seqs 1..count of conv have all arrived; returns the
        seq -> frame map."""

        def done():
            m = self.messages(conv)
            return m if all(s in m for s in range(1, count + 1)) else None

        return await self.wait_state(done, timeout, f"seqs 1..{count} of {conv} (have {len(self.messages(conv))})")

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:
            pass
        self._reader.cancel()
        try:
            await self._reader
        except (asyncio.CancelledError, Exception):
            pass


async def expect_rejected(url, token=None, headers=None, timeout=WAIT):
    """Tries a WebSocket upgrade that must be refused; returns (status, body).
    Fails if a socket opens."""
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = "Bearer " + token
    try:
        ws = await ws_connect(url, additional_headers=hdrs, compression=None, open_timeout=timeout, proxy=None)
    except InvalidStatus as e:
        return e.response.status_code, e.response.body
    await ws.close()
    raise AssertionError(f"upgrade to {url} with {hdrs} was accepted; it must be refused")
