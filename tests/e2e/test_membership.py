"""Membership over HTTP (docs/api.md) and its events (docs/protocol.md):
the owner adds and removes members, a member leaves, the owner deletes the
group. Each change goes through Kafka, gets its own seq, and reaches the
members live (the added one too, the removed one last) or through sync.
The gateway checks who may ask; the consumer, in partition order, is the
authority, and what it refuses lands in the dead-letter topic.

Every user here keeps one other conversation, so that no list asked for in
this file is empty (test_conversations_api covers the empty list), and a
user's HTTP calls go through a gateway where that user has no WebSocket open
(test_http_beside_live covers the other case), so that these tests look at
membership alone."""

import asyncio

from apilib import Api, connect, dead_letter, error_code, gateways, of_type  # noqa: F401
from chatlib import run, wait_until
from conftest import Clients


def http(fn, *args):
    """Runs a blocking HTTP call off the event loop."""
    return asyncio.to_thread(fn, *args)


def seqs_of(live, conv):
    return sorted(d["seq"] for d in live.mongo.messages.find({"conv": conv}, {"seq": 1}))


def keep_a_conversation(live, *users):
    """Gives each user a direct conversation of their own."""
    for u in users:
        live.create_conversation(u, [u + "-pal"])


def test_owner_adds_a_member(live, name):
    a, b, d, e = name("owner"), name("bob"), name("dave"), name("erin")
    keep_a_conversation(live, a, b, d, e)
    g = live.create_conversation(a, [b], kind="group", title="adding")["id"]
    api2 = Api(live.http("gw2"))  # A and D are on gw1

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            sd = await c.connect(d, "gw1")  # online before being added
            first = await sa.send_message(g, "before dave", "m-1")
            await sb.wait_messages(g, 1)

            status, body = await http(api2.add_member, live.token(a), g, d)  # A is on gw1
            assert status == 202, (status, body)
            assert set(body) == {"id"} and len(body["id"]) == 26, body
            for s in (sa, sb, sd):
                f = await s.wait_for(of_type("member", g, action="add", user=d), what=f"the add at {s.label}")
                assert f["id"] == body["id"] and f["seq"] == 2 and f["from"] == a, f

            # Dave is a member now: he sends, everyone gets it.
            hers = await sd.send_message(g, "hello from dave", "d-1")
            for s in (sa, sb, sd):
                m = await s.wait_for(of_type("message", g, id=hers["id"]), what=f"dave's message at {s.label}")
                assert m["seq"] == 3 and m["from"] == d, m
            lst = api2.listed(live.token(d))  # D is on gw1
            assert g in lst and sorted(lst[g]["members"]) == sorted([a, b, d]), lst.get(g)
            doc = live.mongo.conversations.find_one({"_id": g})
            assert sorted(doc["members"]) == sorted([a, b, d]), doc
            assert live.mongo.members.find_one({"_id": f"{g}/{d}"}) is not None
            # History is messages only: the membership event keeps its seq
            # but is not one of them.
            status, h = await http(api2.history, live.token(d), g)
            assert status == 200 and [m["seq"] for m in h["messages"]] == [3, 1], (status, h)
            assert h["messages"][1]["id"] == first["id"]

            # Erin is added while offline, and learns of it through sync.
            status, body_e = await http(api2.add_member, live.token(a), g, e)
            assert status == 202, (status, body_e)
            await sa.wait_for(of_type("member", g, action="add", user=e), what="erin's add at A")
            se = await c.connect(e, "gw2", ready=False)
            start = len(se.frames)
            await se.sync({})
            got = [f for f in se.frames[start:] if f.get("conv") == g]
            assert [(f["t"], f["seq"]) for f in got] == [("message", 1), ("member", 2), ("message", 3), ("member", 4)], got
            assert got[1]["action"] == "add" and got[1]["user"] == d and got[1]["id"] == body["id"], got[1]
            assert got[3]["action"] == "add" and got[3]["user"] == e and got[3]["id"] == body_e["id"], got[3]

    run(scenario())


def test_adding_is_refused(live, name):
    a, b, x, y = name("owner"), name("bob"), name("xavier"), name("yuri")
    keep_a_conversation(live, a, b, x)
    g = live.create_conversation(a, [b], kind="group")["id"]
    direct = live.create_conversation(a, [b])["id"]
    api = Api(live.http("gw2"))

    cases = [
        (live.token(b), g, {"user": y}, 403, "forbidden"),  # not the owner
        (live.token(x), g, {"user": y}, 404, "not_found"),  # not a member
        (live.token(a), direct, {"user": y}, 403, "forbidden"),  # direct: fixed members
        (live.token(a), "g.NOSUCHGROUP", {"user": y}, 404, "not_found"),
        (live.token(a), g, {}, 400, "bad_request"),
        (live.token(a), g, {"user": "bad id"}, 400, "bad_request"),
        (live.token(a), g, {"user": 7}, 400, "bad_request"),
        (None, g, {"user": y}, 401, "unauthorized"),
    ]
    for token, conv, body, want, code in cases:
        status, answer = api.call("POST", f"/v1/conversations/{conv}/members", body, token)
        assert status == want and error_code(answer) == code, (conv, body, status, answer)
    assert live.mongo.messages.count_documents({"conv": {"$in": [g, direct]}}) == 0, "nothing may be stored"
    assert sorted(live.mongo.conversations.find_one({"_id": g})["members"]) == sorted([a, b])


def test_adding_a_member_twice_changes_nothing(live, name):
    """The gateway does not look whether the user is already a member; the
    consumer does, and drops the event: no seq, no frame, no duplicate."""
    a, b = name("owner"), name("bob")
    g = live.create_conversation(a, [b], kind="group")["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            status, body = await http(Api(live.http("gw2")).add_member, live.token(a), g, b)
            assert status in (202, 409), (status, body)
            if status == 202:
                dl = await wait_until(lambda: dead_letter(g, body["id"]), what="the repeated add in the dead-letter topic")
                assert dl[1].get("reason"), dl
            marker = await sa.send_message(g, "marker", "k-1")
            m = await sa.wait_for(of_type("message", g, id=marker["id"]), what="the marker")
            assert m["seq"] == 1, f"the repeated add must take no seq: {m}"
            assert not any(f.get("t") == "member" for f in sa.frames), sa.frames
            assert live.mongo.conversations.find_one({"_id": g})["members"].count(b) == 1

    run(scenario())


def test_member_leaves(live, gateways, name):  # noqa: F811
    """Bob leaves through a gateway that caches no membership answer
    (member_cache_s=0), so his next send is refused at once: he gets the
    member frame that removes him, then `forbidden`, then nothing more."""
    gx = gateways.start("--member-cache-s", "0", label="nocache")
    a, b, c_ = name("owner"), name("bob"), name("carol")
    keep_a_conversation(live, c_)
    g = live.create_conversation(a, [b, c_], kind="group", title="leaving")["id"]
    direct = live.create_conversation(a, [b])["id"]  # Bob's other conversation, and a marker path

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sc = await c.connect(c_, "gw2")
            sb = await connect(c, gx, b)
            # Bob's message from before goes through gw2: on a gateway
            # without the cache, a member's send has a test of its own
            # (test_sending_without_a_membership_cache).
            sb2 = await c.connect(b, "gw2", label="bob@gw2")
            mine = await sb2.send_message(g, "still here", "b-1")
            await sc.wait_for(of_type("message", g, id=mine["id"]), what="Bob's message at Carol")

            status, body = await http(Api(live.http("gw1")).remove_member, live.token(b), g, b)
            assert status == 202 and set(body) == {"id"}, (status, body)
            for s in (sa, sb, sb2, sc):
                f = await s.wait_for(of_type("member", g, action="remove", user=b), what=f"the leave at {s.label}")
                assert f["id"] == body["id"] and f["seq"] == 2 and f["from"] == b, f

            # Bob can no longer send to it.
            await sb.send({"t": "send", "conv": g, "cid": "b-2", "body": "let me back"})
            err = await sb.wait_for(lambda f: f.get("t") in ("error", "sent") and f.get("code", "forbidden") == "forbidden", what="the answer to b-2")
            assert err["t"] == "error" and err["code"] == "forbidden" and err["retry"] is False, err

            # Nothing more of the group reaches him: Alice's next message
            # reaches Carol; a direct message to Bob sent after that arrives,
            # and by then the group's message would have been routed.
            after = await sa.send_message(g, "after bob left", "a-1")
            m = await sc.wait_for(of_type("message", g, id=after["id"]), what="Alice's message at Carol")
            assert m["seq"] == 3, m
            marker = await sa.send_message(direct, "marker", "a-2")
            await sb.wait_for(of_type("message", direct, id=marker["id"]), what="the direct marker at Bob")
            await sb2.wait_for(of_type("message", direct, id=marker["id"]), what="the direct marker at Bob's gw2 device")
            late = [f for f in sb.frames + sb2.frames if f.get("conv") == g and f.get("seq", 0) > 2]
            assert late == [], f"Bob got frames of the group after leaving: {late}"

            doc = live.mongo.conversations.find_one({"_id": g})
            assert sorted(doc["members"]) == sorted([a, c_]), doc
            assert live.mongo.members.find_one({"_id": f"{g}/{b}"}) is None
            assert seqs_of(live, g) == [1, 2, 3], "nothing of Bob's after he left may be stored"
            api = Api(live.http("gw1"))
            assert g not in api.listed(live.token(b)) and direct in api.listed(live.token(b))
            status, h = await http(api.history, live.token(b), g)
            assert status == 404 and error_code(h) == "not_found", (status, h)
            # And sync brings him nothing of it.
            start = len(sb.frames)
            await sb.sync({})
            assert [f for f in sb.frames[start:] if f.get("conv") == g] == []
            # Last, as it is the least of it: the refusal names the send.
            assert err.get("cid") == "b-2", f"an error that answers a send carries its cid (protocol.md): {err}"

    run(scenario())


def test_sending_without_a_membership_cache(live, gateways, name):  # noqa: F811
    """member_cache_s=0 (allowed: 0-3600) means every frame asks the store
    whether its sender is a member: a member's send is then answered `sent`
    and delivered like anywhere else."""
    gx = gateways.start("--member-cache-s", "0", label="nocache")
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await connect(c, gx, b)
            await sb.send({"t": "send", "conv": conv, "cid": "n-1", "body": "no cache"})
            ans = await sb.wait_for(lambda f: f.get("t") in ("sent", "error"), timeout=20, what="the answer to n-1")
            assert ans["t"] == "sent" and ans["cid"] == "n-1", ans
            m = await sa.wait_for(of_type("message", conv, id=ans["id"]), what="the message at A")
            assert m["seq"] == 1 and m["body"] == "no cache"
            await sb.send({"t": "typing", "conv": conv, "state": "start"})
            await sa.wait_for(of_type("typing", conv, user=b, state="start"), what="Bob's typing at A")

    run(scenario())


def test_owner_removes_a_member(live, name):
    a, b, c_ = name("owner"), name("bob"), name("carol")
    keep_a_conversation(live, a, b, c_)
    g = live.create_conversation(a, [b, c_], kind="group", title="removing")["id"]
    direct = live.create_conversation(a, [b])["id"]
    api = Api(live.http("gw2"))

    # Who may not: another member removing someone, the owner leaving,
    # anyone changing a direct conversation, a stranger.
    for token, conv, user, want, code in (
        (live.token(b), g, c_, 403, "forbidden"),
        (live.token(b), g, a, 403, "forbidden"),
        (live.token(a), g, a, 403, "forbidden"),
        (live.token(a), direct, b, 403, "forbidden"),
        (live.token(name("stranger")), g, b, 404, "not_found"),
        (None, g, b, 401, "unauthorized"),
    ):
        status, body = api.call("DELETE", f"/v1/conversations/{conv}/members/{user}", token=token)
        assert status == want and error_code(body) == code, (conv, user, status, body)

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            sc = await c.connect(c_, "gw1")
            status, body = await http(api.remove_member, live.token(a), g, c_)
            assert status == 202, (status, body)
            for s in (sa, sb, sc):
                f = await s.wait_for(of_type("member", g, action="remove", user=c_), what=f"the removal at {s.label}")
                assert f["id"] == body["id"] and f["seq"] == 1 and f["from"] == a, f
            doc = live.mongo.conversations.find_one({"_id": g})
            assert sorted(doc["members"]) == sorted([a, b]), doc
            assert live.mongo.members.find_one({"_id": f"{g}/{c_}"}) is None
            lst = api.listed(live.token(c_))
            assert g not in lst, lst
            status, h = await http(api.history, live.token(c_), g)
            assert status == 404, (status, h)

            # Removed, Carol cannot remove anyone either.
            status, r = await http(api.remove_member, live.token(c_), g, b)
            assert status == 404 and error_code(r) == "not_found", (status, r)

            # The group goes on without her.
            after = await sa.send_message(g, "two of us", "a-1")
            m = await sb.wait_for(of_type("message", g, id=after["id"]), what="the next message at Bob")
            assert m["seq"] == 2, m

    run(scenario())


def test_removed_member_behind_a_cached_gateway(live, name):
    """On gw2 (member_cache_s=30) Bob's membership is still cached as yes
    when he is removed: the gateway may answer his send `sent`
    (docs/design.md), but the consumer refuses it, so it is never stored
    and nobody gets it."""
    a, b = name("owner"), name("bob")
    keep_a_conversation(live, b)
    g = live.create_conversation(a, [b], kind="group")["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            await sb.send_message(g, "cached now", "b-1")  # gw2 caches Bob as a member
            status, body = await http(Api(live.http("gw2")).remove_member, live.token(a), g, b)
            assert status == 202, (status, body)
            await sb.wait_for(of_type("member", g, action="remove", user=b), what="the removal at Bob")

            await sb.send({"t": "send", "conv": g, "cid": "b-2", "body": "ghost"})
            ans = await sb.wait_for(lambda f: f.get("t") in ("sent", "error") and f.get("cid") == "b-2", what="the answer to b-2")
            if ans["t"] == "error":
                assert ans["code"] == "forbidden", ans
            else:
                dl = await wait_until(lambda: dead_letter(g, ans["id"]), what="Bob's late send in the dead-letter topic")
                assert dl[1].get("reason"), dl
                assert live.mongo.messages.find_one({"_id": ans["id"]}) is None
            marker = await sa.send_message(g, "marker", "a-1")
            m = await sa.wait_for(of_type("message", g, id=marker["id"]), what="the marker at A")
            assert m["seq"] == 3, f"seq 1 message, 2 removal, 3 marker; got {m}"
            assert seqs_of(live, g) == [1, 2, 3]
            assert not any(of_type("message", g, cid="b-2")(f) for f in sa.frames)

    run(scenario())


def test_owner_deletes_the_group(live, name):
    a, b, c_ = name("owner"), name("bob"), name("carol")
    keep_a_conversation(live, a, b, c_)
    g = live.create_conversation(a, [b, c_], kind="group", title="doomed")["id"]
    direct = live.create_conversation(a, [b])["id"]
    api1, api2 = Api(live.http("gw1")), Api(live.http("gw2"))

    for token, conv, want, code in (
        (live.token(b), g, 403, "forbidden"),  # a member, not the owner
        (live.token(a), direct, 403, "forbidden"),  # direct conversations are not deleted
        (live.token(name("stranger")), g, 404, "not_found"),
        (None, g, 401, "unauthorized"),
    ):
        status, body = api1.call("DELETE", f"/v1/conversations/{conv}", token=token)
        assert status == want and error_code(body) == code, (conv, status, body)
    assert not live.mongo.conversations.find_one({"_id": g}).get("deleted")

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            sc = await c.connect(c_, "gw1")
            await sa.send_message(g, "last words", "a-1")
            await sc.wait_messages(g, 1)

            status, body = await http(api2.delete, live.token(a), g)
            assert status == 202 and set(body) == {"id"}, (status, body)
            for s in (sa, sb, sc):
                f = await s.wait_for(of_type("conv_deleted", g), what=f"conv_deleted at {s.label}")
                assert f["id"] == body["id"] and f["seq"] == 2 and f["from"] == a, f

            for u, api in ((a, api2), (b, api1), (c_, api2)):
                lst = await wait_until(lambda u=u, api=api: (lambda l: l if g not in l else None)(api.listed(live.token(u))), what=f"{u}'s list without the group")
                assert lst, f"{u} keeps other conversations"
                status, h = await http(api2.history, live.token(u), g)
                assert status == 404 and error_code(h) == "not_found", (u, status, h)
            assert direct in api2.listed(live.token(a)), "the owner's other conversations stay"

            # Deleted is deleted: again, by anyone, is not found.
            status, again = await http(api2.delete, live.token(a), g)
            assert status == 404 and error_code(again) == "not_found", (status, again)

            # A send to it is refused (the gateway may have the membership
            # cached; then the consumer drops it) and stored nowhere.
            await sa.send({"t": "send", "conv": g, "cid": "a-2", "body": "anyone?"})
            ans = await sa.wait_for(lambda f: f.get("t") in ("sent", "error") and f.get("cid") == "a-2", what="the answer to a-2")
            if ans["t"] == "error":
                assert ans["code"] == "forbidden", ans
            else:
                await wait_until(lambda: dead_letter(g, ans["id"]), what="the send to a deleted group in the dead-letter topic")
            assert seqs_of(live, g) == [1, 2]
            for s in (sb, sc):
                assert not any(of_type("message", g, cid="a-2")(f) for f in s.frames)

    run(scenario())


def test_group_max(live, gateways, name):  # noqa: F811
    gw = gateways.start("--group-max", "3", label="gmax")
    api = gw.api()
    a, b, c_, d = name("owner"), name("bob"), name("carol"), name("dave")
    keep_a_conversation(live, a)
    token = live.token(a)

    status, body = api.create(token, [b, c_, d], kind="group")
    assert status == 413 and error_code(body) == "too_large", (status, body)
    # Three with the caller is the limit; a repeated name is one member.
    status, g = api.create(token, [b, c_, b], kind="group")
    assert status == 201 and len(g["members"]) == 3, (status, g)
    status, body = api.add_member(token, g["id"], d)
    assert status == 413 and error_code(body) == "too_large", (status, body)
    assert sorted(live.mongo.conversations.find_one({"_id": g["id"]})["members"]) == sorted([a, b, c_])

    # Room again after a removal.
    assert api.remove_member(token, g["id"], c_)[0] == 202

    def members():
        m = sorted(live.mongo.conversations.find_one({"_id": g["id"]})["members"])
        return m if m == sorted([a, b]) else None

    run(wait_until(members, what="the group without carol"))
    status, body = api.add_member(token, g["id"], d)
    assert status == 202, (status, body)
    run(wait_until(lambda: sorted(live.mongo.conversations.find_one({"_id": g["id"]})["members"]) == sorted([a, b, d]), what="dave in the group"))
