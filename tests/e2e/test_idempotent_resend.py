"""A resend of the same cid (after a lost `sent`, from any device or gateway)
is the same event: both answered `sent` with one id, one document in
MongoDB."""

from chatlib import run, wait_until
from conftest import Clients


def test_idempotent_resend(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            first = await sa.send_message(conv, "only once", "dup-1")
            again = await sa.send_message(conv, "only once", "dup-1")
            assert again["id"] == first["id"]
            # The same cid from A's other device on the other gateway.
            sa2 = await c.connect(a, "gw2")
            third = await sa2.send_message(conv, "only once", "dup-1")
            assert third["id"] == first["id"]

            # A later message of the same conversation is behind every copy in
            # its partition: once it is stored, all copies were handled.
            marker = await sa.send_message(conv, "marker", "dup-2")
            await wait_until(lambda: live.mongo.messages.find_one({"_id": marker["id"]}), what="the marker in MongoDB")

            docs = list(live.mongo.messages.find({"conv": conv}).sort("seq", 1))
            assert [(d["_id"], d["seq"]) for d in docs] == [(first["id"], 1), (marker["id"], 2)]
            assert docs[0]["cid"] == "dup-1" and docs[0]["body"] == "only once" and docs[0]["from"] == a

            got = await sa.wait_messages(conv, 2)
            assert got[1]["id"] == first["id"] and got[2]["id"] == marker["id"]

    run(scenario())
