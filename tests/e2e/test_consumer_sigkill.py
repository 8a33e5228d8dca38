"""A consumer dies by SIGKILL while A streams 300 messages, and comes back.
Every message answered `sent` ends in MongoDB exactly once, seqs are dense
1..N, and B (syncing if it missed some live) has all of them."""

import asyncio

import pytest

from chatlib import run, wait_until
from conftest import Clients

N = 300
KILL_AFTER = 100


@pytest.mark.timeout(480)
def test_consumer_sigkill(live, consumers, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            sent = []
            killed = asyncio.Event()

            async def sender():
                for i in range(1, N + 1):
                    sent.append(await sa.send_message(conv, f"k {i}", f"k-{i}", timeout=60))
                    if i == KILL_AFTER:
                        # Which consumer owns this conversation's partition is
                        # the group's business: kill one, and if that was the
                        # wrong one the test still proves a rebalance loses
                        # nothing.
                        consumers.kill("c1")
                        killed.set()

            task = asyncio.create_task(sender())
            await asyncio.wait_for(killed.wait(), 180)
            consumers.restart("c1")
            await task
            assert len(sent) == N

            # A consumer group takes up to a session timeout to give the dead
            # member's partitions away: the bound is generous.
            await wait_until(
                lambda: live.mongo.messages.count_documents({"conv": conv}) >= N,
                timeout=180,
                what=f"{N} messages of {conv} in MongoDB",
            )
            docs = list(live.mongo.messages.find({"conv": conv}, {"_id": 1, "seq": 1, "body": 1}).sort("seq", 1))
            ids = [d["_id"] for d in docs]
            assert len(ids) == len(set(ids)) == N, f"{len(ids)} documents, {len(set(ids))} distinct"
            assert {s["id"] for s in sent} == set(ids), "every `sent` message must be stored, and nothing else"
            assert [d["seq"] for d in docs] == list(range(1, N + 1)), "seqs must be dense from 1"
            by_id = {s["id"]: i for i, s in enumerate(sent, start=1)}
            assert all(by_id[d["_id"]] == d["seq"] for d in docs), "seq order must be send order"

            # B was connected throughout; what it missed live, sync brings.
            have = sb.max_contiguous(conv)
            if have < N:
                await sb.sync({conv: have}, timeout=60)
            got = await sb.wait_messages(conv, N, timeout=60)
            assert sorted(got) == list(range(1, N + 1))
            assert all(got[seq]["id"] == docs[seq - 1]["_id"] for seq in got)

        live.check_alive()

    run(scenario(), timeout=460)
