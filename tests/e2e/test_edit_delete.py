"""Edit and delete over WebSocket (docs/protocol.md): only the author
changes a message; each change is answered `sent`, gets its own seq, and
reaches every member as an `edit` / `delete` frame, live or through sync.
The stored message keeps its seq: an edit replaces the body and sets
edited_ts, a delete leaves a tombstone. A change of someone else's message,
of a seq that is not a message, or of a deleted one is dropped by the
consumer (dead-letter topic) and changes nothing."""

from apilib import answer_to, dead_letter, of_type
from chatlib import run, wait_until
from conftest import Clients


def stored(live, conv, seq):
    return live.mongo.messages.find_one({"conv": conv, "seq": seq})


def test_author_edits(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            a2 = await c.connect(a, "gw2", label="a2")
            sb = await c.connect(b, "gw2")
            orig = await sa.send_message(conv, "helo Bob", "m-1")
            await sb.wait_messages(conv, 1)

            await sa.send({"t": "edit", "conv": conv, "target": 1, "body": "hello Bob", "cid": "e-1"})
            sent = await answer_to(sa, "e-1")
            assert sent["t"] == "sent" and sent["conv"] == conv and sent["id"] != orig["id"], sent
            for s in (sa, a2, sb):
                f = await s.wait_for(of_type("edit", conv, target=1), what=f"the edit at {s.label}")
                assert f["id"] == sent["id"] and f["seq"] == 2 and f["from"] == a and f["body"] == "hello Bob", f
                assert f["ts"] == sent["ts"] and f.get("cid") == "e-1", f

            doc = stored(live, conv, 1)
            assert doc["_id"] == orig["id"] and doc["body"] == "hello Bob" and doc["edited_ts"] == sent["ts"], doc
            assert not doc.get("deleted"), doc

            # A second edit wins over the first; the seq of the message stays 1.
            await sa.send({"t": "edit", "conv": conv, "target": 1, "body": "hello, Bob", "cid": "e-2"})
            s2 = await answer_to(sa, "e-2")
            f = await sb.wait_for(of_type("edit", conv, target=1, id=s2["id"]), what="the second edit at B")
            assert f["seq"] == 3 and f["body"] == "hello, Bob", f
            doc = await wait_until(lambda: (lambda d: d if d.get("body") == "hello, Bob" else None)(stored(live, conv, 1)), what="the second edit stored")
            assert doc["edited_ts"] == s2["ts"], doc

            # Resending an edit with the same cid is the same event.
            await sa.send({"t": "edit", "conv": conv, "target": 1, "body": "hello, Bob", "cid": "e-2"})
            again = await sa.wait_for(lambda f: f.get("t") in ("sent", "error") and f.get("cid") == "e-2", what="the repeated e-2")
            assert again["t"] == "sent" and again["id"] == s2["id"], again
            marker = await sa.send_message(conv, "marker", "m-2")
            m = await sb.wait_for(of_type("message", conv, id=marker["id"]), what="the marker at B")
            assert m["seq"] == 4, f"the repeated edit must take no seq: {m}"

    run(scenario())


def test_author_deletes(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            await sa.send_message(conv, "oops, wrong chat", "m-1")
            keep = await sa.send_message(conv, "this stays", "m-2")
            await sb.wait_messages(conv, 2)

            await sa.send({"t": "delete", "conv": conv, "target": 1, "cid": "x-1"})
            sent = await answer_to(sa, "x-1")
            assert sent["t"] == "sent", sent
            for s in (sa, sb):
                f = await s.wait_for(of_type("delete", conv, target=1), what=f"the delete at {s.label}")
                assert f["id"] == sent["id"] and f["seq"] == 3 and f["from"] == a and "body" not in f, f
            doc = stored(live, conv, 1)
            assert doc.get("deleted") is True and doc.get("body", "") == "", doc
            assert stored(live, conv, 2)["body"] == "this stays"

            # A deleted message cannot be edited or deleted again: both are
            # answered `sent` by the gateway and dropped by the consumer.
            for frame in (
                {"t": "edit", "conv": conv, "target": 1, "body": "resurrected", "cid": "e-9"},
                {"t": "delete", "conv": conv, "target": 1, "cid": "x-9"},
            ):
                await sa.send(frame)
                ans = await answer_to(sa, frame["cid"])
                if ans["t"] == "sent":
                    dl = await wait_until(lambda: dead_letter(conv, ans["id"]), what=f"{frame['t']} of a tombstone in the dead-letter topic")
                    assert dl[1].get("reason"), dl
                else:
                    assert ans["code"] == "not_found", ans
            doc = stored(live, conv, 1)
            assert doc.get("deleted") is True and doc.get("body", "") == "", doc
            marker = await sa.send_message(conv, "marker", "m-3")
            m = await sb.wait_for(of_type("message", conv, id=marker["id"]), what="the marker at B")
            assert m["seq"] == 4, m
            assert not any(f.get("t") in ("edit", "delete") and f.get("seq") != 3 for f in sb.frames), sb.frames
            assert keep["id"] == stored(live, conv, 2)["_id"]

    run(scenario())


def test_someone_elses_message_stays(live, name):
    """Bob tries to edit and delete Alice's message, and a seq that is no
    message: nothing changes, no seq is taken, Alice gets no frame of it.
    The consumer's dead letters prove it handled each one; a marker Bob
    sends after them is the next seq."""
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            orig = await sa.send_message(conv, "mine, not yours", "m-1")
            await sb.wait_messages(conv, 1)
            before = stored(live, conv, 1)

            tries = [
                {"t": "edit", "conv": conv, "target": 1, "body": "pwned", "cid": "e-1"},
                {"t": "delete", "conv": conv, "target": 1, "cid": "x-1"},
                {"t": "edit", "conv": conv, "target": 99, "body": "nothing there", "cid": "e-2"},
                {"t": "delete", "conv": conv, "target": 99, "cid": "x-2"},
            ]
            for frame in tries:
                await sb.send(frame)
                ans = await answer_to(sb, frame["cid"])
                if ans["t"] == "sent":
                    dl = await wait_until(lambda: dead_letter(conv, ans["id"]), what=f"{frame} in the dead-letter topic")
                    assert dl[0]["from"] == b and dl[1].get("reason"), dl
                else:
                    assert ans["code"] in ("forbidden", "not_found"), (frame, ans)

            marker = await sb.send_message(conv, "marker", "m-2")
            m = await sa.wait_for(of_type("message", conv, id=marker["id"]), what="Bob's marker at A")
            assert m["seq"] == 2, f"no refused change may take a seq: {m}"
            changes = [f for f in sa.frames + sb.frames if f.get("t") in ("edit", "delete")]
            assert changes == [], changes
            after = stored(live, conv, 1)
            assert after == before and after["body"] == "mine, not yours" and "edited_ts" not in after, after
            assert after["_id"] == orig["id"]
            assert sorted(d["seq"] for d in live.mongo.messages.find({"conv": conv})) == [1, 2]

    run(scenario())


def test_changes_reach_an_offline_member_through_sync(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            await sa.send_message(conv, "first draft", "m-1")
            await sa.send_message(conv, "regret", "m-2")
            await sa.send_message(conv, "untouched", "m-3")
            await sa.send({"t": "edit", "conv": conv, "target": 1, "body": "final draft", "cid": "e-1"})
            edit = await answer_to(sa, "e-1")
            await sa.send({"t": "delete", "conv": conv, "target": 2, "cid": "x-1"})
            dele = await answer_to(sa, "x-1")
            await sa.wait_for(of_type("delete", conv, target=2), what="A's own delete frame")

            sb = await c.connect(b, "gw2", ready=False)
            start = len(sb.frames)
            await sb.sync({})
            got = {f["seq"]: f for f in sb.frames[start:] if f.get("conv") == conv}
            assert sorted(got) == [1, 2, 3, 4, 5], got
            # The messages as they are now...
            assert got[1]["t"] == "message" and got[1]["body"] == "final draft" and got[1].get("edited_ts") == edit["ts"], got[1]
            assert got[2]["t"] == "message" and got[2].get("deleted") is True and not got[2].get("body"), got[2]
            assert got[3]["t"] == "message" and got[3]["body"] == "untouched", got[3]
            # ...and the changes themselves, as frames of their own type.
            assert got[4]["t"] == "edit" and got[4]["target"] == 1 and got[4]["body"] == "final draft" and got[4]["id"] == edit["id"], got[4]
            assert got[5]["t"] == "delete" and got[5]["target"] == 2 and got[5]["id"] == dele["id"], got[5]

            # A client that already holds seqs 1..3 gets just the changes.
            start = len(sb.frames)
            await sb.sync({conv: 3})
            assert [(f["t"], f["seq"]) for f in sb.frames[start:] if f.get("conv") == conv] == [("edit", 4), ("delete", 5)]

    run(scenario())


def test_bad_change_frames(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            await sa.send_message(conv, "target", "m-1")
            await sa.wait_messages(conv, 1)
            for frame in (
                {"t": "edit", "conv": conv, "body": "no target", "cid": "b-1"},
                {"t": "edit", "conv": conv, "target": 0, "body": "seq 0", "cid": "b-2"},
                {"t": "edit", "conv": conv, "target": "1", "body": "string target", "cid": "b-3"},
                {"t": "edit", "conv": conv, "target": 1, "cid": "b-4"},
                {"t": "edit", "conv": conv, "target": 1, "body": "", "cid": "b-5"},
                {"t": "delete", "conv": conv, "cid": "b-6"},
            ):
                await sa.send(frame)
                err = await answer_to(sa, frame["cid"])
                assert err["t"] == "error" and err["code"] == "bad_frame" and err["retry"] is False, (frame, err)
            await sa.send({"t": "edit", "conv": conv, "target": 1, "body": "e" * 4097, "cid": "b-7"})
            err = await answer_to(sa, "b-7")
            assert err["t"] == "error" and err["code"] == "too_large", err
            assert stored(live, conv, 1)["body"] == "target"

    run(scenario())
