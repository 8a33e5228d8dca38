"""Consumers commit their offsets asynchronously after each batch, and again
synchronously for the partitions they hand over or when they stop
(docs/design.md, "Offsets, and the messages after a batch"). A clean stop
must therefore lose no commit: consumers started again apply nothing that
was stored before (a replayed message would count as a duplicate)."""

import re
import signal
import time

import pytest

from apilib import HoldingRelay
from chatlib import run, wait_until
from conftest import CONSUMERS, Clients, Proc


def stats_since_start(log):
    """The counters of the last stats line of the consumer's latest run
    (after its last start marker): events, stored, duplicates."""
    lines = log.read_text(errors="replace").splitlines()
    starts = [i for i, l in enumerate(lines) if l.startswith("=== ") and " start: " in l]
    assert starts, f"no start marker in {log}"
    stats = [l for l in lines[starts[-1] :] if " stats: " in l]
    assert stats, f"no stats line in {log} since the last start"
    return {k: int(v) for k, v in re.findall(r"(events|stored|duplicates) (\d+)", stats[-1])}


@pytest.mark.timeout(300)
def test_clean_stop_loses_no_commit(live, consumers, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]
    count = 40

    async def send(start, n):
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            for i in range(start, start + n):
                await sa.send_message(conv, f"c {i}", f"c-{i}", timeout=60)
        await wait_until(
            lambda: live.mongo.messages.count_documents({"conv": conv}) >= start + n,
            timeout=120,
            what=f"{start + n} messages of {conv} in MongoDB",
        )

    run(send(0, count), timeout=200)
    for cid in CONSUMERS:
        assert consumers.stop(cid) == 0, f"consumer {cid} did not stop cleanly"
    for cid in CONSUMERS:
        consumers.restart(cid)
    # One more message on the same conversation, so on the same partition:
    # once it is stored, anything the restarted consumers replayed from
    # that partition came before it.
    run(send(count, 1), timeout=200)
    for cid in CONSUMERS:
        assert consumers.stop(cid) == 0, f"consumer {cid} did not stop cleanly"
    after = [stats_since_start(live.consumers[cid].log) for cid in CONSUMERS]
    for cid in CONSUMERS:
        consumers.restart(cid)
    assert sum(s["duplicates"] for s in after) == 0, f"stored events applied again after a clean stop: {after}"
    assert sum(s["stored"] for s in after) >= 1, after
    live.check_alive()


def wait_ready(proc, timeout=60):
    """Until the consumer's latest run has its store ready (it subscribes
    right after)."""
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        if re.search(r"store: database \S+ ready", proc.log.read_text(errors="replace").split("=== ")[-1]):
            return
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_stop_during_start_up_is_clean(live, consumers):
    """Consumers stopped while they join the group exit 0. With librdkafka
    2.0 a cooperative-sticky member that closes between its join and its
    first assignment aborts (librdkafka#4312; it happened here to a consumer
    stopped two seconds after both had been restarted) unless it lets the
    assignment arrive first (consumer/cs-source.c, cs_source_destroy). The
    window is a moment of the group's rebalance, so both consumers are
    restarted together and one is stopped at several delays; with the fix
    every stop is clean whichever moment it meets."""
    for delay in (0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
        for cid in CONSUMERS:
            assert consumers.stop(cid) == 0, f"consumer {cid} did not stop cleanly"
        for cid in CONSUMERS:
            consumers.restart(cid)
        for cid in CONSUMERS:
            wait_ready(live.consumers[cid])
        time.sleep(delay)
        proc = live.consumers[CONSUMERS[-1]]
        assert consumers.stop(CONSUMERS[-1]) == 0, f"stopped {delay} s after start-up:\n{proc.tail()}"
        consumers.restart(CONSUMERS[-1])
    live.check_alive()



def current_run(proc):
    return proc.log.read_text(errors="replace").split("\n=== ")[-1]


def wait_log(proc, pattern, timeout, what):
    deadline = time.monotonic() + timeout
    while not re.search(pattern, current_run(proc)):
        assert proc.alive(), f"{proc.name} exited waiting for {what}:\n{proc.tail()}"
        assert time.monotonic() < deadline, f"{proc.name}: no {what} within {timeout}s:\n{proc.tail()}"
        time.sleep(0.1)


@pytest.mark.timeout(300)
def test_assignment_during_stop_is_clean(live, consumers, name):
    """A consumer that is handed partitions while it stops still stops.
    librdkafka before 2.4 hangs for good in close when an incremental
    assignment reaches a member that is closing (librdkafka#4527): two
    consumers stopped together, the first one's partitions handed to the
    second as it leaves (seen here at the end of a benchmark: the second
    was killed 10 s after SIGTERM). cs_source_destroy unsubscribes and
    serves what is queued before it closes, and bounds the close.

    Made to happen every time: the suite's two consumers are stopped and
    two of this test take the group, one of them reaching the store through
    a relay that holds its bytes, so that its loop is blocked in a store
    call while librdkafka's threads go on. The other is stopped; the group
    hands its partitions to the held one, whose loop cannot take them yet;
    the held one is told to stop and its store let go: it leaves with the
    assignment waiting. It must exit 0, and the synchronous commit of its
    revocation must be accepted: without the fix the close left the group
    first and the broker refused it ("Unknown member"), every time here;
    the hang itself came only now and then."""
    relay = HoldingRelay.to_store()
    for cid in CONSUMERS:
        assert consumers.stop(cid) == 0, f"consumer {cid} did not stop cleanly"
    held_uri = relay.store_uri()
    held = Proc(name("cx-held"), live._consumer_argv("cx-held") + ["--mongo-uri", held_uri], live.env)
    peer = Proc(name("cx-peer"), live._consumer_argv("cx-peer"), live.env)
    try:
        held.start()
        peer.start()
        for proc in (held, peer):
            wait_log(proc, r"kafka: assigned incremental partitions \[\d", 60, "partitions")
        # Messages in many conversations, so in both consumers' partitions.
        a = name("alice")
        convs = [live.create_conversation(a, [name("bob")])["id"] for _ in range(16)]
        relay.hold()

        async def send():
            async with Clients(live) as c:
                sa = await c.connect(a, "gw1")
                for i, conv in enumerate(convs):
                    await sa.send_message(conv, f"t {i}", f"t-{i}")

        run(send(), timeout=120)
        deadline = time.monotonic() + 60
        while relay.held == 0:
            assert time.monotonic() < deadline, f"the held consumer never called its store:\n{held.tail()}"
            time.sleep(0.1)

        assert peer.stop(grace=40) == 0, peer.tail()
        # The group rebalances without the held consumer's loop: its next
        # heartbeat (every 3 s) learns of it and the assignment waits in its
        # queue. Should it come later, it comes during the stop all the same.
        time.sleep(6)
        held.popen.send_signal(signal.SIGTERM)
        relay.release()
        rc = held.stop(grace=40)
        assert rc == 0, f"the consumer handed partitions as it stopped: exit {rc}\n{held.tail()}"
        # Its revocation's synchronous commit went out while it was still a
        # member: a close that left first had it refused ("Unknown member").
        run_log = [r for r in held.log.read_text(errors="replace").split("\n=== ") if " start: " in r][-1]
        assert "commit failed" not in run_log, f"the held consumer's commits at its stop:\n{run_log[-2500:]}"
        for cid in CONSUMERS:
            consumers.restart(cid)
        run(
            wait_until(lambda: live.mongo.messages.count_documents({"conv": {"$in": convs}}) >= len(convs), timeout=120, what="the test's messages stored"),
            timeout=150,
        )
    finally:
        relay.release()
        for proc in (held, peer):
            proc.stop()
        relay.close()
    live.check_alive()
