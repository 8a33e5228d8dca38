"""A client that connects while the consumer is writing a message gets it:
live if the store did not have it when the client synced (ARCHITECTURE.md:
"a client that connects while messages are in flight misses none").

The consumer reads the recipients' presence after its write, not before:
a lookup made before the write can miss a connection that registers
during the write, and that connection's sync, reading the store before the
write ends, misses the event too; it would arrive only with the next sync.

Made to happen every time: the suite's consumers are stopped and one of
this test reaches the store through a relay that holds the bytes going to
it. A's second message reaches the consumer, whose write then waits in the
relay; B connects and syncs meanwhile (through a gateway that reads the
store directly: the sync cannot have the message); then the relay lets go.
B must get the message live. The consumer's other store traffic is kept off
the relay for the test's length (server monitoring every 10 minutes,
last_seq written after 10 minutes), so the held bytes are the write."""

import pytest

from apilib import HoldingRelay
from chatlib import run, wait_until
from conftest import CONSUMERS, Clients, Proc
from test_commits import wait_log


@pytest.mark.timeout(300)
def test_connect_during_write(live, consumers, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]
    relay = HoldingRelay.to_store()
    for cid in CONSUMERS:
        assert consumers.stop(cid) == 0, f"consumer {cid} did not stop cleanly"
    held_uri = relay.store_uri("?heartbeatFrequencyMS=600000")
    cx = Proc(name("cx-write"), live._consumer_argv("cx-write") + ["--mongo-uri", held_uri, "--last-seq-ms", "600000"], live.env)

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            first = await sa.send_message(conv, "before", "w-1")
            await sa.wait_for(lambda f: f.get("t") == "message" and f.get("id") == first["id"], what="the first message's echo")

            relay.hold()
            held = relay.held
            second = await sa.send_message(conv, "during the write", "w-2")
            await wait_until(lambda: relay.held > held, what="the consumer's write held in the relay")

            sb = await c.connect(b, "gw2", ready=False)
            msgs, synced = await sb.sync({})
            assert [m["seq"] for m in msgs if m["conv"] == conv] == [1], f"sync while the write is held: {msgs}"
            relay.release()
            got = await sb.wait_for(lambda f: f.get("t") == "message" and f.get("id") == second["id"], what="the message written while B connected")
            assert got["seq"] == 2 and got["body"] == "during the write"

    try:
        cx.start()
        wait_log(cx, r"kafka: assigned incremental partitions \[\d", 60, "partitions")
        run(scenario(), timeout=200)
        assert cx.stop(grace=40) == 0, cx.tail()
    finally:
        relay.release()
        cx.stop()
        relay.close()
        for cid in CONSUMERS:
            consumers.restart(cid)
    live.check_alive()
