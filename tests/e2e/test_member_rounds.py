"""Membership lookups that the gateway's cache cannot answer go to the store
in rounds that serve many connections at once (gateway/gw-store.c,
docs/design.md "Membership in rounds"). Served together, each sender still
gets its own answer: a member's message is accepted and stored, a
stranger's is refused, and a connection that closed while its lookup
waited changes nothing for the others.

The test's own gateway reaches the test stack's FerretDB through a TCP
relay that can hold the bytes going to it. While the store is held, the
first two first-sends start the two rounds that may run at once and the
rest wait (`member_waiting`); once released, the waiting ones, more than a
round asks one by one, go to the store together as one `_id $in`.
Nothing depends on timing: the test waits for counters and frames, each
within a bound."""

from apilib import HoldingRelay, gateways, metric  # noqa: F401 (gateways: a fixture)
from chatlib import ChatSocket, run, wait_until
from conftest import Clients

MEMBERS = 12  # waiting together: more than the 8 a round asks one by one


def test_lookups_served_together(live, gateways, name):
    hub, stranger = name("hub"), name("stranger")
    u = [name(f"u{i}") for i in range(MEMBERS)]
    convs = [live.create_conversation(hub, [x])["id"] for x in u]

    relay = HoldingRelay.to_store()
    gx = gateways.start("--mongo-uri", relay.store_uri(), label="lookups", env={"UV_THREADPOOL_SIZE": "4"})

    async def scenario():
        async with Clients(live) as c:

            async def connect(who, label):
                s = await ChatSocket.connect(gx.ws, live.token(who), validator=live.server_validator, label=label)
                c.sockets.append(s)
                return s

            first = [await connect(hub, "hub-a"), await connect(hub, "hub-b")]
            socks = [await connect(x, f"m{i}") for i, x in enumerate(u)]
            strange = await connect(stranger, "stranger")
            # u[0]'s second device asks the same lookup as u[0], then goes.
            gone = await connect(u[0], "gone")

            rounds = metric(gx.http, "member_rounds")
            relay.hold()
            # The hub's two first sends take the two rounds that may run.
            for i, s in enumerate(first):
                await s.send({"t": "send", "conv": convs[i], "cid": f"h-{i}", "body": "from the hub"})
            await wait_until(lambda: relay.held > 0, what="the first lookup at the held store")
            # The same lookup twice in one round, the closed one's first.
            await gone.send({"t": "send", "conv": convs[0], "cid": "g-0", "body": "never mind"})
            for i, s in enumerate(socks):
                await s.send({"t": "send", "conv": convs[i], "cid": f"m-{i}", "body": f"from {u[i]}"})
            await strange.send({"t": "send", "conv": convs[1], "cid": "x-1", "body": "not mine"})
            waiting = MEMBERS + 2
            await wait_until(lambda: metric(gx.http, "member_waiting") == waiting, what=f"{waiting} lookups waiting for a round")
            await gone.close()
            relay.release()

            for i, s in enumerate(first):
                await s.wait_for(lambda f, i=i: f.get("t") == "sent" and f.get("cid") == f"h-{i}", what=f"sent for h-{i}")
            for i, s in enumerate(socks):
                await s.wait_for(lambda f, i=i: f.get("t") == "sent" and f.get("cid") == f"m-{i}", what=f"sent for m-{i}")
            refused = await strange.wait_for(lambda f: f.get("t") in ("sent", "error") and f.get("cid") == "x-1", what="the stranger's answer")
            assert refused["t"] == "error" and refused["code"] == "forbidden", refused

            def stored():
                got = {}
                for d in live.mongo.messages.find({"conv": {"$in": convs}}, {"conv": 1, "from": 1, "body": 1}):
                    got.setdefault(d["conv"], []).append((d["from"], d["body"]))
                return got

            want = {conv: sorted([(u[i], f"from {u[i]}")] + ([(hub, "from the hub")] if i < 2 else [])) for i, conv in enumerate(convs)}
            await wait_until(lambda: {k: sorted(v) for k, v in stored().items()} == want, what="each member's message stored, no other")
            # Two rounds held, then one for everything that waited.
            assert metric(gx.http, "member_rounds") - rounds == 3
            assert metric(gx.http, "member_waiting") == 0

    try:
        run(scenario())
    finally:
        relay.release()
        relay.close()
