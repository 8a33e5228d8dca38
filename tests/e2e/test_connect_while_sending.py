"""B connects while A is sending 200 messages. What B receives live and what
sync brings overlap; keeping one per seq, B ends with every seq 1..200 exactly
once, and never two different events under one seq."""

import asyncio

from chatlib import run
from conftest import Clients

N = 200
CONNECT_AFTER = 60


def test_connect_while_sending(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            halfway = asyncio.Event()
            sent = []

            async def sender():
                for i in range(1, N + 1):
                    sent.append(await sa.send_message(conv, f"busy {i}", f"m-{i}"))
                    if i == CONNECT_AFTER:
                        halfway.set()

            task = asyncio.create_task(sender())
            await asyncio.wait_for(halfway.wait(), 120)
            sb = await c.connect(b, "gw2", ready=False)
            await sb.send({"t": "sync", "have": {}})
            await task

            got = await sb.wait_messages(conv, N, timeout=90)
            await sb.wait_for(lambda f: f.get("t") == "synced", what="synced")
            assert sorted(got) == list(range(1, N + 1)), "seqs outside 1..N"
            by_id = {s["id"]: i for i, s in enumerate(sent, start=1)}
            for seq, m in got.items():
                # A sent one after another, each after the last one's `sent`:
                # Kafka order is send order, so seq i is the i-th message.
                assert by_id[m["id"]] == seq, f"seq {seq} is message {by_id[m['id']]}"
                assert m["body"] == f"busy {seq}"

    run(scenario())
