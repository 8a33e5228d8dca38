"""Syncs read the store in rounds that serve many connections at once
(gateway/gw-sync.c, docs/design.md "Sync in rounds"). Served together,
each connection still gets exactly its own conversations' events, in seq
order, from its own `have`, across page and round boundaries, and the other
members' receipt watermarks, and nothing of anyone else's.

A gateway of this test reaches the test stack's FerretDB through a TCP relay
that can hold the bytes going to it. While the store is held, the first two
sync frames start the two rounds that may run at once (one sync each) and
the rest wait for a round (`sync_waiting`; one of them is dropped when its
connection closes); once released, the waiting ones go to the store
together, so at least one round serves several syncs.
Nothing depends on timing: the test waits for counters, each within a
bound."""

import asyncio

from apilib import HoldingRelay, gateways, metric  # noqa: F401 (gateways: a fixture)
from chatlib import ChatSocket, run, wait_until
from conftest import Clients

LONG = 120  # three pages of 50 for a fresh sync
EXTRA = 14  # more conversations of the hub than one round asks for


def test_syncs_served_together(live, gateways, name):
    hub = name("hub")
    u = [name(f"u{i}") for i in range(1, 6)]
    direct = [live.create_conversation(hub, [x])["id"] for x in u]
    group = live.create_conversation(hub, u[:3], kind="group", title="g")["id"]
    extra = [live.create_conversation(hub, [u[3]], kind="group", title=f"x{i}")["id"] for i in range(EXTRA)]
    sizes = {direct[0]: LONG, group: 7}
    sizes.update({c: 3 for c in direct[1:]})
    sizes.update({c: 1 for c in extra})
    members = {c: {hub, x} for c, x in zip(direct, u)}
    members[group] = {hub, *u[:3]}
    members.update({c: {hub, u[3]} for c in extra})

    relay = HoldingRelay.to_store()
    gx = gateways.start("--mongo-uri", relay.store_uri(), label="rounds", env={"UV_THREADPOOL_SIZE": "4"})

    async def scenario():
        async with Clients(live) as c:
            # Everything is sent and stored through the session's gateways.
            senders = {x: await c.connect(x, "gw1") for x in [hub, u[0], u[1]]}
            n = 0
            for conv, size in sizes.items():
                who = senders[hub] if conv != group else senders[u[1]]
                for i in range(size):
                    n += 1
                    await who.send_message(conv, f"{conv} #{i + 1}", f"r-{n}")
            await senders[u[0]].send({"t": "read", "conv": direct[0], "upto": 100})
            await senders[u[1]].send({"t": "read", "conv": group, "upto": 5})

            def stored():
                got = {d["_id"]: d["n"] for d in live.mongo.messages.aggregate([{"$match": {"conv": {"$in": list(sizes)}}}, {"$group": {"_id": "$conv", "n": {"$sum": 1}}}])}
                reads = {(d["conv"], d["user"]): d.get("read_seq", 0) for d in live.mongo.members.find({"conv": {"$in": [direct[0], group]}})}
                return got == sizes and reads.get((direct[0], u[0])) == 100 and reads.get((group, u[1])) == 5

            await wait_until(stored, what="every message and both reads stored")
            marks = {}
            for d in live.mongo.members.find({"conv": {"$in": list(sizes)}}):
                for kind in ("delivered", "read"):
                    if d.get(f"{kind}_seq", 0) > 0:
                        marks.setdefault(d["conv"], set()).add((d["user"], kind, d[f"{kind}_seq"]))

            # The syncing connections, all on the held gateway: who, have.
            plan = [
                (hub, {}),
                (hub, {direct[0]: 100, group: 7}),
                (u[0], {}),
                (u[0], {direct[0]: 70}),
                (u[1], {group: 3}),
                (u[2], {}),
                (u[3], {}),
                (u[4], {direct[4]: 3}),
            ]
            socks = []
            for i, (who, _) in enumerate(plan):
                socks.append(await ChatSocket.connect(gx.ws, live.token(who), validator=live.server_validator, label=f"s{i}-{who}"))
            c.sockets.extend(socks)

            # One more, whose connection closes while its sync waits: the
            # queue forgets it, and the rounds go on without it.
            gone = await ChatSocket.connect(gx.ws, live.token(u[4]), label="gone")
            c.sockets.append(gone)

            pages, rounds = metric(gx.http, "sync_pages"), metric(gx.http, "sync_rounds")
            relay.hold()
            starts = [len(s.frames) for s in socks]
            for s, (_, have) in zip(socks, plan):
                await s.send({"t": "sync", "have": have})
            await gone.send({"t": "sync", "have": {}})
            await wait_until(lambda: metric(gx.http, "sync_waiting") == len(plan) - 1, what="all but two syncs waiting for a round")
            await gone.close()
            await wait_until(lambda: metric(gx.http, "sync_waiting") == len(plan) - 2, what="the closed connection's sync no longer waiting")
            relay.release()

            for s, start, (who, have) in zip(socks, starts, plan):
                synced = await s.wait_for(lambda f: f.get("t") == "synced", what=f"synced at {s.label}")
                frames = s.frames[start : s.frames.index(synced, start)]
                mine = [conv for conv in sizes if who in members[conv]]
                got = {}
                for f in frames:
                    if f.get("t") == "message":
                        got.setdefault(f["conv"], []).append(f["seq"])
                want = {conv: list(range(have.get(conv, 0) + 1, sizes[conv] + 1)) for conv in mine}
                want = {conv: seqs for conv, seqs in want.items() if seqs}
                assert got == want, f"{s.label} synced {have}: got {({k: (v[0], v[-1], len(v)) for k, v in got.items()})}"
                assert synced["count"] == sum(len(v) for v in want.values()), (s.label, synced)
                receipts = {(f["conv"], f["user"], f["kind"], f["upto"]) for f in frames if f.get("t") == "receipt"}
                want_r = {(conv, user, kind, upto) for conv in mine for user, kind, upto in marks.get(conv, ()) if user != who}
                assert receipts == want_r, (s.label, receipts ^ want_r)
            assert (direct[0], u[0], "read", 100) in {(f["conv"], f["user"], f["kind"], f["upto"]) for f in socks[0].frames if f.get("t") == "receipt"}

            pages = metric(gx.http, "sync_pages") - pages
            rounds = metric(gx.http, "sync_rounds") - rounds
            # The hub's fresh sync alone takes three pages of 50, and its 20
            # conversations more than one round's 16; with the six waiting
            # syncs served together there are fewer rounds than pages.
            assert pages >= len(plan) + 2 and rounds < pages, (pages, rounds)
            assert metric(gx.http, "sync_waiting") == 0

    try:
        run(scenario())
    finally:
        relay.release()
        relay.close()
