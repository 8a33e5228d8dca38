"""Conversations over HTTP (docs/api.md): a direct conversation is one per
pair and idempotent, a group has its caller as owner, and the list shows
each of mine with members, last message and the unread count that follows
my read watermark."""

from apilib import Api, error_code, gateways, of_type  # noqa: F401
from chatlib import run, wait_until
from conftest import Clients


def test_direct_is_idempotent(live, name):
    a, b = name("alice"), name("bob")
    api1, api2 = Api(live.http("gw1")), Api(live.http("gw2"))

    status, first = api1.create(live.token(a), [b])
    assert status == 201, (status, first)
    assert first["kind"] == "direct" and first["created"] is True, first
    assert first["id"].startswith("d.") and sorted(first["members"]) == sorted([a, b]), first

    # A member already there stays as it is (its watermarks are not reset).
    live.mongo.members.update_one({"conv": first["id"], "user": a}, {"$set": {"read_seq": 5}})
    status, again = api2.create(live.token(a), [b])
    assert status == 200, (status, again)
    marks = {d["user"]: d["read_seq"] for d in live.mongo.members.find({"conv": first["id"]})}
    assert marks == {a: 5, b: 0}, marks
    assert again["id"] == first["id"] and again["created"] is False and again["kind"] == "direct", again

    # The other side asking, with kind spelled out, lands in the same one.
    status, reverse = api1.create(live.token(b), [a], kind="direct")
    assert status == 200 and reverse["id"] == first["id"] and reverse["created"] is False, (status, reverse)
    assert live.mongo.conversations.count_documents({"_id": first["id"]}) == 1
    assert live.mongo.conversations.count_documents({"kind": "direct", "members": {"$all": [a, b]}}) == 1


def test_direct_needs_exactly_one_other(live, name):
    a, b, c = name("alice"), name("bob"), name("carol")
    api = Api(live.http("gw1"))
    for members in ([a], [b, c], [], ["bad id"]):
        status, body = api.create(live.token(a), members)
        assert status == 400 and error_code(body) == "bad_request", (members, status, body)
    status, body = api.create(live.token(a), [b], kind="channel")
    assert status == 400 and error_code(body) == "bad_request", (status, body)
    status, body = api.call("PUT", "/v1/conversations", {"members": [b]}, live.token(a))
    assert status == 405 and error_code(body) == "method_not_allowed", (status, body)
    assert live.mongo.conversations.count_documents({"members": a}) == 0


def test_group_create(live, name):
    a, b, c = name("alice"), name("bob"), name("carol")
    api = Api(live.http("gw2"))
    status, g = api.create(live.token(a), [b, c, b], kind="group", title="Trip")
    assert status == 201, (status, g)
    assert g["kind"] == "group" and g["created"] is True and g["id"].startswith("g."), g
    # The caller is a member; a repeated member counts once.
    assert sorted(g["members"]) == sorted([a, b, c]), g
    # A second create is another group: groups are not idempotent.
    status, g2 = api.create(live.token(a), [b, c], kind="group", title="Trip")
    assert status == 201 and g2["id"] != g["id"], (status, g2)

    listed = Api(live.http("gw1")).listed(live.token(c))
    assert g["id"] in listed and g2["id"] in listed, listed
    entry = listed[g["id"]]
    assert entry["kind"] == "group" and entry["title"] == "Trip" and entry["owner"] == a, entry
    assert sorted(entry["members"]) == sorted([a, b, c]), entry
    assert entry["last_seq"] == 0 and entry["unread"] == 0 and entry["last_message"] is None, entry

    status, body = api.create(live.token(a), [b], kind="group", title="t" * 201)
    assert status == 400 and error_code(body) == "bad_request", (status, body)


def test_list_last_message_and_unread(live, name):
    a, b, c = name("alice"), name("bob"), name("carol")
    api = Api(live.http("gw1"))
    direct = live.create_conversation(a, [b])["id"]
    group = live.create_conversation(a, [b, c], kind="group", title="list test")["id"]
    other = live.create_conversation(a, [c])["id"]

    async def scenario():
        async with Clients(live) as cl:
            sa = await cl.connect(a, "gw1")
            sb = await cl.connect(b, "gw2")
            sent = [await sa.send_message(direct, f"direct {i}", f"d-{i}") for i in (1, 2, 3)]
            gsent = await sa.send_message(group, "group 1", "g-1")
            await sb.wait_messages(direct, 3)
            await sb.wait_messages(group, 1)

            def b_sees(unread_direct, unread_group):
                lst = api.listed(live.token(b))
                d, g = lst.get(direct), lst.get(group)
                ok = d and g and d["unread"] == unread_direct and g["unread"] == unread_group
                return lst if ok else None

            lst = await wait_until(lambda: b_sees(3, 1), what="B's list with unread 3 and 1")
            assert other not in lst, "B is not in A and C's conversation"
            d, g = lst[direct], lst[group]
            assert d["kind"] == "direct" and sorted(d["members"]) == sorted([a, b]) and d["owner"] is None, d
            assert d["last_seq"] == 3 and d["read_seq"] == 0, d
            assert d["last_message"] == {"seq": 3, "from": a, "ts": sent[2]["ts"], "body": "direct 3"}, d
            assert g["last_message"] == {"seq": 1, "from": a, "ts": gsent["ts"], "body": "group 1"}, g
            assert sorted(g["members"]) == sorted([a, b, c]) and g["owner"] == a and g["title"] == "list test", g
            # Most recent activity first.
            order = [e["id"] for e in Api(live.http("gw2")).conversations(live.token(b))[1]["conversations"]]
            assert order.index(group) < order.index(direct), order

            # B reads up to 2, then up to 3: unread follows the watermark.
            await sb.send({"t": "read", "conv": direct, "upto": 2})
            lst = await wait_until(lambda: b_sees(1, 1), what="B's unread 1 after read upto 2")
            assert lst[direct]["read_seq"] == 2
            await sb.send({"t": "read", "conv": direct, "upto": 3})
            lst = await wait_until(lambda: b_sees(0, 1), what="B's unread 0 after read upto 3")
            assert lst[direct]["read_seq"] == 3

            # A new message makes it unread again, and moves it to the top.
            s4 = await sa.send_message(direct, "direct 4", "d-4")
            lst = await wait_until(lambda: b_sees(1, 1), what="B's unread 1 after a fourth message")
            assert lst[direct]["last_message"]["body"] == "direct 4" and lst[direct]["last_message"]["ts"] == s4["ts"]
            order = [e["id"] for e in api.conversations(live.token(b))[1]["conversations"]]
            assert order.index(direct) < order.index(group), order
            await sa.wait_for(of_type("receipt", direct, user=b, kind="read", upto=3), what="B's read receipt at A")

    run(scenario())


def test_list_needs_a_token(live):
    status, body = Api(live.http("gw1")).call("GET", "/v1/conversations")
    assert status == 401 and error_code(body) == "unauthorized", (status, body)


def test_list_of_a_new_user_is_empty(live, gateways, name):  # noqa: F811
    """A user with no conversation gets an empty list. Asked of a gateway of
    this test alone: if the answer crashes a gateway, the session's gw1 and
    gw2 stay up for the rest of the suite."""
    gw = gateways.start(label="empty")
    status, body = gw.api().conversations(live.token(name("newbie")))
    assert status == 200 and body == {"conversations": []}, (status, body)
    assert gw.proc.alive(), f"the gateway died answering an empty list:\n{gw.proc.tail(12)}"
