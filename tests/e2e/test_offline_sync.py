"""B is offline while A sends 120 messages; when B connects, sync brings all
120 in seq order, once each, and ends with `synced`."""

from apilib import metric
from chatlib import run, wait_until
from conftest import Clients

N = 120


def test_offline_sync(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sent = []
            for i in range(1, N + 1):
                sent.append(await sa.send_message(conv, f"offline {i}", f"m-{i}"))
            assert len({s["id"] for s in sent}) == N

            # Sync reads the store: wait until the consumers wrote all of it,
            # so that sync alone must bring every message.
            await wait_until(
                lambda: live.mongo.messages.count_documents({"conv": conv}) >= N,
                timeout=90,
                what=f"{N} messages of {conv} in MongoDB",
            )

            sb = await c.connect(b, "gw2", ready=False)
            msgs, synced = await sb.sync({})
            seqs = [m["seq"] for m in msgs if m["conv"] == conv]
            assert seqs == list(range(1, N + 1)), f"sync gave seqs {seqs[:10]}...{seqs[-10:]} ({len(seqs)})"
            assert synced["count"] == N
            for i, m in enumerate(msgs, start=1):
                assert m["id"] == sent[i - 1]["id"]
                assert m["body"] == f"offline {i}"
                assert m["from"] == a and m["cid"] == f"m-{i}"

            # `have` is honoured: a client that holds everything gets nothing,
            # one that holds 100 gets 101..120.
            msgs, synced = await sb.sync({conv: N})
            assert [m for m in msgs if m["conv"] == conv] == [] and synced["count"] == 0
            msgs, synced = await sb.sync({conv: 100})
            assert [m["seq"] for m in msgs if m["conv"] == conv] == list(range(101, N + 1))
            assert synced["count"] == N - 100

            # A remainder of exactly one page (50, the gateway's sync_page)
            # is one page read, not a full one and an empty one; of exactly
            # two pages, two. B has this one conversation, and no other
            # client syncs through gw2 meanwhile.
            for have, pages in ((N - 50, 1), (N - 100, 2)):
                before = metric(live.http("gw2"), "sync_pages")
                msgs, synced = await sb.sync({conv: have})
                assert [m["seq"] for m in msgs if m["conv"] == conv] == list(range(have + 1, N + 1))
                assert synced["count"] == N - have
                assert metric(live.http("gw2"), "sync_pages") - before == pages

            # And through the other gateway, a second device of B.
            sb2 = await c.connect(b, "gw1", ready=False)
            msgs, synced = await sb2.sync({})
            assert [m["seq"] for m in msgs if m["conv"] == conv] == list(range(1, N + 1))

    run(scenario())
