"""A gateway told to stop while its store does not answer stops once the
store work already running ends: the work still queued for a pool thread
is cancelled (answered as a store failure), not started one by one
(docs/operations.md, "Stopping").

The store is the test stack's FerretDB behind a TCP relay of this test that
can hold the bytes going to it: while held, the gateway's store calls
wait, as behind a store that stalls. The gateway runs with two pool threads
(UV_THREADPOOL_SIZE=2), so of the N requests sent while the relay holds,
two run (and wait) and the rest queue. Nothing here depends on timing: the
test waits for the gateway's counters and log, each within a bound."""

import os
import re
import signal
import socket
import time

from apilib import HoldingRelay, gateways, metric  # noqa: F401 (gateways: a fixture)

N = 12
THREADS = 2


def _request(port, token):
    """Sends GET /v1/conversations and leaves the answer unread."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET /v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return s


def _wait(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}; last {last!r}"
        time.sleep(0.1)


def test_stop_cancels_queued_store_jobs(live, gateways, name):
    relay = HoldingRelay.to_store()
    socks = []
    gx = gateways.start("--mongo-uri", relay.store_uri(), label="slowstore", env={"UV_THREADPOOL_SIZE": str(THREADS)})
    gateways.forget(gx)  # stopped below, by this test
    try:
        token = live.token(name("u"))
        jobs = metric(gx.http, "store_jobs")
        relay.hold()
        socks = [_request(gx.port, token) for _ in range(N)]
        _wait(lambda: metric(gx.http, "store_jobs") - jobs >= N, 60, f"{N} store jobs submitted")

        os.kill(gx.pid, signal.SIGTERM)
        pattern = re.compile(r"stopping: (\d+) queued store jobs cancelled, (\d+) still running")
        m = _wait(lambda: pattern.search(gx.proc.log.read_text(errors="replace")), 60, "the gateway's stop to cancel its queued store jobs")
        cancelled, running = int(m.group(1)), int(m.group(2))
        assert cancelled == N - THREADS and running == THREADS, m.group(0)
        # Nothing of the gateway's stop waits for the cancelled ones: it
        # ends once the store answers the two that run.
        assert gx.proc.alive(), "the gateway stopped before the store answered the jobs that run"
        relay.release()
        rc = gx.proc.popen.wait(60)
        assert rc == 0, gx.proc.tail()
    finally:
        relay.release()
        for s in socks:
            s.close()
        gx.proc.stop()
        relay.close()
