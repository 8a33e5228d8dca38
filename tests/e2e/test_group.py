"""A group of three: each member sends some messages at once; every member
receives all of them, under the same seqs, in seq order."""

import asyncio

from chatlib import run
from conftest import Clients

PER_MEMBER = 5


def test_group_order(live, name):
    a, b, c_ = name("alice"), name("bob"), name("carol")
    conv = live.create_conversation(a, [b, c_], kind="group", title="e2e group")
    assert conv["id"].startswith("g.")
    assert conv["kind"] == "group"
    assert sorted(conv["members"]) == sorted([a, b, c_])
    conv = conv["id"]
    total = 3 * PER_MEMBER

    async def scenario():
        async with Clients(live) as c:
            members = {
                a: await c.connect(a, "gw1"),
                b: await c.connect(b, "gw2"),
                c_: await c.connect(c_, "gw1"),
            }

            async def talk(user, sock):
                return [await sock.send_message(conv, f"{user} says {i}", f"g-{i}") for i in range(PER_MEMBER)]

            sent = await asyncio.gather(*(talk(u, s) for u, s in members.items()))
            sent_ids = {s["id"] for batch in sent for s in batch}
            assert len(sent_ids) == total

            views = {}
            for user, sock in members.items():
                got = await sock.wait_messages(conv, total)
                assert sorted(got) == list(range(1, total + 1))
                assert {m["id"] for m in got.values()} == sent_ids
                views[user] = {seq: (m["id"], m["from"], m["body"]) for seq, m in got.items()}
                # Live frames arrive in seq order (a replayed duplicate may
                # come again later; only first arrivals are compared).
                first = []
                for f in sock.frames:
                    if f.get("t") == "message" and f.get("conv") == conv and f["seq"] not in first:
                        first.append(f["seq"])
                assert first == sorted(first), f"{user} saw seqs in the order {first}"
            assert views[a] == views[b] == views[c_], "members disagree on the order"
            # Each sender's own messages keep their relative order.
            for batch in sent:
                seqs = [next(seq for seq, v in views[a].items() if v[0] == s["id"]) for s in batch]
                assert seqs == sorted(seqs)

    run(scenario())
