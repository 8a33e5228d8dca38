"""Fixtures of the end-to-end suite: the real programs against the real test
stack, never mocks.

scripts/test.sh starts the test stack (Kafka 29092, Redis 26379, FerretDB
27028) and exports where it is; this file starts, once per session, two
gateways (gw1 on 18081, gw2 on 18082) and two consumers (c1, c2 in group
chat-consumers-test) from the sanitizer build (CHAT_BUILD_DIR, default
build-test), waits for each gateway's /v1/health, and stops them all at the
end (SIGTERM, then SIGKILL). Their logs stay in .local/test-logs/.

To run one test by hand:  scripts/test.sh runs everything; or start the test
stack as test.sh does and then  .local/venv/bin/pytest tests/e2e -k live
"""

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chatlib  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / os.environ.get("CHAT_BUILD_DIR", "build-test")
LOGS = Path(os.environ.get("CHAT_TEST_LOGS", REPO / ".local" / "test-logs"))
KAFKA = os.environ.get("CHAT_KAFKA_BROKERS", "127.0.0.1:29092")
REDIS_HOST = os.environ.get("CHAT_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CHAT_REDIS_PORT", "26379"))
MONGO_URI = os.environ.get("CHAT_MONGO_URI", "mongodb://127.0.0.1:27028/chat")
GATEWAYS = [("gw1", 18081), ("gw2", 18082)]
CONSUMERS = ["c1", "c2"]
GROUP = "chat-consumers-test"
SCHEMAS = REPO / "schemas"

# The programs run under ASan/UBSan: stop at the first report so it cannot
# hide, and leave the report in the program's log (test.sh scans the logs).
SANITIZER_ENV = {
    "ASAN_OPTIONS": "halt_on_error=1:abort_on_error=0:detect_leaks=1:allocator_may_return_null=1",
    "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
}


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _hostport(s):
    host, port = s.split(",")[0].rsplit(":", 1)
    return host, int(port)


class Proc:
    """One program under test, with its log and pid file in LOGS."""

    def __init__(self, name, argv, env):
        self.name = name
        self.argv = argv
        self.env = env
        self.log = LOGS / f"{name}.log"
        self.pidfile = LOGS / f"{name}.pid"
        self.popen = None

    def start(self):
        if os.environ.get("CHAT_BUILD_FAILED"):
            raise RuntimeError(f"the build failed ({os.environ['CHAT_BUILD_FAILED']}): no programs to test")
        LOGS.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{self.popen.pid}\n")

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def _note(self, what):
        with open(self.log, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} {what}\n".encode())

    def kill9(self):
        """SIGKILL, as a crash would; waits until the process is gone."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)
            self._note("killed with SIGKILL by the test")
        self.pidfile.unlink(missing_ok=True)

    def stop(self, grace=15):
        """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit code."""
        if self.popen is None:
            return None
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGKILL)
                self.popen.wait(10)
                self._note(f"did not stop within {grace}s of SIGTERM: killed")
        rc = self.popen.returncode
        self._note(f"exited with {rc}")
        self.pidfile.unlink(missing_ok=True)
        return rc

    def tail(self, n=30):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class Stack:
    """The running system as the tests see it."""

    def __init__(self):
        self.secret = "e2e-" + secrets.token_hex(24)
        self.env = dict(os.environ, **SANITIZER_ENV)
        self.gateways = {}
        self.consumers = {}
        self._mongo = None
        try:
            self.server_validator = chatlib.FrameValidator(SCHEMAS / "server.v1.json")
        except Exception:
            self.server_validator = None  # test_schemas reports a missing or broken schema

    # --- programs

    def _gateway_argv(self, gid, port):
        return [
            str(BUILD / "gateway" / "chat-gateway"),
            "--port", str(port),
            "--gateway-id", gid,
            "--jwt-secret", self.secret,
            "--kafka-brokers", KAFKA,
            "--redis-host", REDIS_HOST,
            "--redis-port", str(REDIS_PORT),
            "--mongo-uri", MONGO_URI,
        ]  # fmt: skip

    def _consumer_argv(self, cid):
        return [
            str(BUILD / "consumer" / "chat-consumer"),
            "--consumer-id", cid,
            "--kafka-brokers", KAFKA,
            "--redis-host", REDIS_HOST,
            "--redis-port", str(REDIS_PORT),
            "--mongo-uri", MONGO_URI,
            "--group", GROUP,
        ]  # fmt: skip

    def start(self):
        if os.environ.get("CHAT_BUILD_FAILED"):
            raise RuntimeError(f"the build failed ({os.environ['CHAT_BUILD_FAILED']}): no programs to test")
        missing = [p for p in (BUILD / "gateway" / "chat-gateway", BUILD / "consumer" / "chat-consumer") if not p.exists()]
        if missing:
            raise RuntimeError(f"not built: {', '.join(map(str, missing))} (scripts/test.sh builds {BUILD.name})")
        down = [
            f"{what} {h}:{p}"
            for what, (h, p) in (("kafka", _hostport(KAFKA)), ("redis", (REDIS_HOST, REDIS_PORT)), ("mongodb", _hostport(MONGO_URI.split("//", 1)[1].split("/", 1)[0])))
            if not _port_open(h, p)
        ]
        if down:
            raise RuntimeError(f"the test stack is not up ({', '.join(down)}): scripts/test.sh starts it")
        for gid, port in GATEWAYS:
            if _port_open("127.0.0.1", port):
                raise RuntimeError(f"port {port} for {gid} is taken by another process")
            self.gateways[gid] = Proc(gid, self._gateway_argv(gid, port), self.env)
            self.gateways[gid].port = port
            self.gateways[gid].start()
        for cid in CONSUMERS:
            self.consumers[cid] = Proc(cid, self._consumer_argv(cid), self.env)
            self.consumers[cid].start()
        for gid, _ in GATEWAYS:
            self.wait_healthy(gid)
        for cid in CONSUMERS:
            if not self.consumers[cid].alive():
                raise RuntimeError(f"consumer {cid} exited at start:\n{self.consumers[cid].tail()}")

    def wait_healthy(self, gid, timeout=60):
        proc = self.gateways[gid]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"gateway {gid} exited (code {proc.popen.returncode}):\n{proc.tail()}")
            try:
                status, body = chatlib.http_json("GET", self.http(gid) + "/v1/health", timeout=2)
                if status == 200:
                    return body
                last = (status, body)
            except OSError as e:
                last = e
            time.sleep(0.2)
        raise RuntimeError(f"gateway {gid} not healthy within {timeout}s (last: {last!r}):\n{proc.tail()}")

    def stop(self):
        codes = {}
        for name, proc in list(self.gateways.items()) + list(self.consumers.items()):
            codes[name] = proc.stop()
        if self._mongo is not None:
            self._mongo.client.close()
        return codes

    def kill_consumer(self, cid):
        self.consumers[cid].kill9()

    def stop_consumer(self, cid):
        """SIGTERM, the clean stop; returns the exit code. Not before the
        consumer's latest run is up (its store ready: its signal handlers
        are in place long before), so that a consumer restarted just now
        is stopped cleanly, not killed by a signal it cannot catch yet."""
        proc = self.consumers[cid]
        deadline = time.monotonic() + 60
        while proc.alive() and time.monotonic() < deadline:
            run_log = proc.log.read_text(errors="replace").split("\n=== ")[-1]
            if re.search(r"store: database \S+ ready", run_log):
                break
            time.sleep(0.05)
        return proc.stop()

    def restart_consumer(self, cid):
        proc = self.consumers[cid]
        if not proc.alive():
            proc.start()

    def check_alive(self):
        """Fails if a program died; restarts it first, so that one crash
        fails the test that caused it rather than every test after it."""
        dead = [p for p in list(self.gateways.values()) + list(self.consumers.values()) if not p.alive()]
        if not dead:
            return
        report = "\n".join(f"{p.name} died (code {p.popen.returncode}), log {p.log}:\n{p.tail()}" for p in dead)
        for p in dead:
            p.start()
            if p.name in self.gateways:
                self.wait_healthy(p.name)
        raise AssertionError(report)

    # --- addresses and credentials

    def http(self, gid="gw1"):
        return f"http://127.0.0.1:{dict(GATEWAYS)[gid]}"

    def ws(self, gid="gw1"):
        return f"ws://127.0.0.1:{dict(GATEWAYS)[gid]}/v1/ws"

    def token(self, user, **kw):
        return chatlib.mint_token(user, self.secret, **kw)

    def create_conversation(self, owner, members, kind=None, title=None, gid="gw1"):
        return chatlib.create_conversation(self.http(gid), self.token(owner), members, kind, title)

    @property
    def mongo(self):
        """The test database (pymongo), from CHAT_MONGO_URI."""
        if self._mongo is None:
            import pymongo

            client = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=10000)
            self._mongo = client.get_default_database()
        return self._mongo


class Clients:
    """The WebSocket clients of one test: `async with Clients(stack) as c`.
    Closes them all at the end and fails the test if the server sent any
    frame its schema does not allow."""

    def __init__(self, stack):
        self.stack = stack
        self.sockets = []

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        for s in self.sockets:
            await s.close()
        if exc_type is None:
            bad = [(s.label, why, frame) for s in self.sockets for why, frame in s.invalid]
            assert not bad, f"frames that break schemas/server.v1.json: {bad[:5]}"
        return False

    async def connect(self, user, gid="gw1", ready=True, label=None, **kw):
        """Connects `user` to gateway `gid` with a fresh token and waits for
        hello. With ready=True it also syncs, so the connection's presence is
        registered (the protocol says sync does that first) before the test
        goes on: whatever is sent after this returns reaches it live."""
        sock = await chatlib.ChatSocket.connect(
            self.stack.ws(gid),
            self.stack.token(user),
            validator=self.stack.server_validator,
            label=label or f"{user}@{gid}",
            **kw,
        )
        self.sockets.append(sock)
        assert sock.hello.get("user") == user, sock.hello
        assert sock.hello.get("gw") == gid, sock.hello
        if ready:
            await sock.sync()
        return sock


@pytest.fixture(scope="session")
def stack():
    s = Stack()
    try:
        s.start()
    except Exception:
        s.stop()
        raise
    yield s
    codes = s.stop()
    # A gateway or consumer that did not exit cleanly on SIGTERM is a bug
    # worth seeing, but the tests already ran: report it in the log only.
    print(f"\nprograms stopped: {codes}")


@pytest.fixture
def live(stack):
    """The stack, checked alive before and after the test (a program found
    dead is restarted and fails the test)."""
    stack.check_alive()
    yield stack
    stack.check_alive()


@pytest.fixture
def consumers(stack):
    """kill(cid) sends SIGKILL to a consumer, stop(cid) SIGTERM (returns the
    exit code), restart(cid) starts it again; at the end of the test every
    consumer runs again whatever happened."""

    class Control:
        kill = staticmethod(stack.kill_consumer)
        stop = staticmethod(stack.stop_consumer)
        restart = staticmethod(stack.restart_consumer)

    yield Control
    for cid in CONSUMERS:
        stack.restart_consumer(cid)


@pytest.fixture
def name():
    """name('alice') -> 'alice-1a2b3c4d': users unique to this test."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"
