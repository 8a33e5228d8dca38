"""Consumers commit their offsets asynchronously after each batch, and again
synchronously for the partitions they hand over or when they stop
(docs/design.md, "Offsets, and the messages after a batch"). A clean stop
must therefore lose no commit: consumers started again apply nothing that
was stored before (a replayed message would count as a duplicate)."""

import re
import time

import pytest

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
