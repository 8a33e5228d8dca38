"""A on gw1 sends to B on gw2: B gets it live; A gets `sent`, then B's
delivered receipt, then B's read receipt; the watermarks land in MongoDB."""

from chatlib import run, wait_until
from conftest import Clients


def test_live_message_and_receipts(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])
    assert conv["id"].startswith("d.")
    assert conv["kind"] == "direct"
    assert sorted(conv["members"]) == sorted([a, b])
    cid = "m-1"

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")

            sent = await sa.send_message(conv["id"], "hello bob", cid)
            assert sent["conv"] == conv["id"] and sent["cid"] == cid

            got = await sb.wait_for(lambda f: f.get("t") == "message" and f.get("id") == sent["id"], what="the message at B")
            assert got["conv"] == conv["id"]
            assert got["from"] == a  # stamped from A's token
            assert got["dev"] == sa.conn
            assert got["cid"] == cid
            assert got["body"] == "hello bob"
            assert got["seq"] == 1
            assert got["ts"] == sent["ts"]

            # The sender's own device gets the message with its seq too.
            own = await sa.wait_for(lambda f: f.get("t") == "message" and f.get("id") == sent["id"], what="A's own message")
            assert own["seq"] == got["seq"]

            def receipt(kind):
                return lambda f: (
                    f.get("t") == "receipt" and f.get("conv") == conv["id"] and f.get("user") == b and f.get("kind") == kind
                )

            await sb.send({"t": "delivered", "conv": conv["id"], "upto": got["seq"]})
            delivered = await sa.wait_for(receipt("delivered"), what="the delivered receipt at A")
            assert delivered["upto"] == got["seq"]

            await sb.send({"t": "read", "conv": conv["id"], "upto": got["seq"]})
            read = await sa.wait_for(receipt("read"), what="the read receipt at A")
            assert read["upto"] == got["seq"]

            order = [sa.frames.index(f) for f in (sent, delivered, read)]
            assert order == sorted(order), "A must see sent, then delivered, then read"

            member = await wait_until(
                lambda: live.mongo.members.find_one(
                    {"_id": f"{conv['id']}/{b}", "delivered_seq": {"$gte": 1}, "read_seq": {"$gte": 1}}
                ),
                what=f"B's watermarks in members/{conv['id']}/{b}",
            )
            assert member["delivered_seq"] == 1 and member["read_seq"] == 1

            # Watermarks only move forward: an older one changes nothing and
            # sends no receipt.
            s2 = await sa.send_message(conv["id"], "second", "m-2")
            await sb.wait_for(lambda f: f.get("t") == "message" and f.get("id") == s2["id"], what="the second message")
            await sb.send({"t": "read", "conv": conv["id"], "upto": 2})
            await sa.wait_for(lambda f: receipt("read")(f) and f["upto"] == 2, what="read receipt upto 2")
            await sb.send({"t": "read", "conv": conv["id"], "upto": 1})
            # The next event of the conversation is behind the stale read in
            # its partition: when its effect shows, the stale one was handled.
            await sb.send({"t": "delivered", "conv": conv["id"], "upto": 2})
            await sa.wait_for(lambda f: receipt("delivered")(f) and f["upto"] == 2, what="delivered receipt upto 2")
            await wait_until(
                lambda: (live.mongo.members.find_one({"_id": f"{conv['id']}/{b}"}) or {}).get("delivered_seq") == 2,
                what="delivered_seq 2",
            )
            assert live.mongo.members.find_one({"_id": f"{conv['id']}/{b}"})["read_seq"] == 2
            stale = [f for f in sa.frames if receipt("read")(f) and f["upto"] == 1]
            assert len(stale) == 1, f"a stale read must send no receipt: {stale}"

    run(scenario())


def test_live_in_a_conversation_made_after_connecting(live, name):
    """Connections that were up (and synced) before a conversation existed
    still get its messages live: the sender's own connection included, as
    protocol.md says of `sent`. (Here A's HTTP request to the gateway that
    holds A's socket must not unhook that socket from A's live routing.)"""
    a, b = name("alice"), name("bob")

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            conv = live.create_conversation(a, [b], gid="gw1")["id"]
            sent = await sa.send_message(conv, "new conversation", "n-1")
            for s in (sb, sa):
                f = await s.wait_for(lambda f: f.get("t") == "message" and f.get("id") == sent["id"], what=f"the message at {s.label}")
                assert f["seq"] == 1 and f["conv"] == conv

    run(scenario())
