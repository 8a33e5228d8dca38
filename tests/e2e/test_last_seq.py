"""The conversation document's last_seq is written lazily (a busy
conversation's at most every last_seq_ms, every lagging one when a consumer
hands its partitions over or stops; docs/design.md, "last_seq"). A crash can
therefore leave it behind the stored messages: the next owner must still
give dense seqs that continue the stored ones, and a clean stop must leave
it exact."""

import pytest

from chatlib import run, wait_until
from conftest import CONSUMERS, Clients


def stored(live, conv):
    return list(live.mongo.messages.find({"conv": conv}, {"_id": 1, "seq": 1}).sort("seq", 1))


async def send_all(sock, conv, start, count):
    return [await sock.send_message(conv, f"n {i}", f"n-{i}", timeout=60) for i in range(start, start + count)]


async def wait_stored(live, conv, count):
    await wait_until(
        lambda: live.mongo.messages.count_documents({"conv": conv}) >= count,
        timeout=180,
        what=f"{count} messages of {conv} in MongoDB",
    )


@pytest.mark.timeout(480)
def test_new_owner_continues_past_a_lagging_last_seq(live, consumers, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]
    first, more = 20, 10

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            sent = await send_all(sa, conv, 0, first)
            await wait_stored(live, conv, first)

            # Every consumer dies at once, and the store's last_seq is left
            # where a crash before the next write would leave it, whatever
            # the consumers had written.
            for cid in CONSUMERS:
                consumers.kill(cid)
            live.mongo.conversations.update_one({"_id": conv}, {"$set": {"last_seq": 5}})
            for cid in CONSUMERS:
                consumers.restart(cid)

            sent += await send_all(sa, conv, first, more)
            total = first + more
            await wait_stored(live, conv, total)
            docs = stored(live, conv)
            ids = [d["_id"] for d in docs]
            assert len(ids) == len(set(ids)) == total, f"{len(ids)} documents, {len(set(ids))} distinct"
            assert [d["seq"] for d in docs] == list(range(1, total + 1)), "seqs must be dense from 1"
            assert [s["id"] for s in sent] == ids, "seq order must be send order"

            have = sb.max_contiguous(conv)
            if have < total:
                await sb.sync({conv: have}, timeout=60)
            got = await sb.wait_messages(conv, total, timeout=60)
            assert all(got[seq]["id"] == ids[seq - 1] for seq in got)

        live.check_alive()

    run(scenario(), timeout=460)


@pytest.mark.timeout(300)
def test_clean_stop_leaves_last_seq_exact(live, consumers, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]
    count = 15

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            await send_all(sa, conv, 0, count)
            await wait_stored(live, conv, count)

    run(scenario(), timeout=280)
    for cid in CONSUMERS:
        assert consumers.stop(cid) == 0, f"consumer {cid} did not stop cleanly"
    doc = live.mongo.conversations.find_one({"_id": conv})
    assert doc["last_seq"] == count, doc
    for cid in CONSUMERS:
        consumers.restart(cid)
    live.check_alive()
