"""Every connection of a user gets the message: B's two devices, and A's
second device gets A's own message (with the sending device in `dev`)."""

from chatlib import run
from conftest import Clients


def test_multi_device(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            a1 = await c.connect(a, "gw1", label="a1")
            a2 = await c.connect(a, "gw2", label="a2")
            b1 = await c.connect(b, "gw1", label="b1")
            b2 = await c.connect(b, "gw2", label="b2")
            assert len({a1.conn, a2.conn, b1.conn, b2.conn}) == 4, "connection ids must differ"

            sent = await a1.send_message(conv, "to every device", "md-1")
            frames = {}
            for s in (a1, a2, b1, b2):
                frames[s.label] = await s.wait_for(
                    lambda f: f.get("t") == "message" and f.get("id") == sent["id"], what=f"the message at {s.label}"
                )
            for label, f in frames.items():
                assert f["seq"] == 1 and f["from"] == a and f["dev"] == a1.conn, (label, f)
                assert f["body"] == "to every device"

            # And the other way round, from B's second device.
            sent2 = await b2.send_message(conv, "reply", "md-2")
            for s in (a1, a2, b1, b2):
                f = await s.wait_for(lambda f: f.get("t") == "message" and f.get("id") == sent2["id"], what=f"reply at {s.label}")
                assert f["seq"] == 2 and f["from"] == b and f["dev"] == b2.conn

    run(scenario())
