"""The HTTP side of a gateway: health, and conversations."""

from chatlib import http_json, run
from conftest import GATEWAYS, Clients


def test_health(live):
    for gid, _ in GATEWAYS:
        status, body = http_json("GET", live.http(gid) + "/v1/health")
        assert status == 200 and body == {"status": "ok", "gateway": gid}, (gid, status, body)


def test_direct_conversation_is_one_per_pair(live, name):
    a, b = name("alice"), name("bob")
    first = live.create_conversation(a, [b], gid="gw1")
    again = live.create_conversation(b, [a], gid="gw2")
    # docs/api.md: the same two users always get the same conversation,
    # whoever asks and through whichever gateway.
    assert first["id"] == again["id"] and first["id"].startswith("d.")
    assert first["kind"] == "direct" and sorted(first["members"]) == sorted([a, b])
    doc = live.mongo.conversations.find_one({"_id": first["id"]})
    assert doc is not None and doc["kind"] == "direct" and sorted(doc["members"]) == sorted([a, b])


def test_conversation_needs_a_token(live):
    status, body = http_json("POST", live.http("gw1") + "/v1/conversations", {"members": ["bob"]})
    assert status == 401
    assert isinstance(body, dict) and "error" in body and body["error"].get("code"), body


def test_bad_conversation_requests(live, name):
    a = name("alice")
    token = live.token(a)
    url = live.http("gw1") + "/v1/conversations"
    for body in ({}, {"members": "bob"}, {"members": ["bad id with spaces"]}, {"members": []}):
        status, answer = http_json("POST", url, body, token=token)
        assert status == 400, (body, status, answer)
        assert isinstance(answer, dict) and "error" in answer, answer


def test_query_string_token(live, name):
    a = name("alice")

    async def scenario():
        async with Clients(live) as c:
            s = await c.connect(a, "gw2", ready=False, query_token=True)
            await s.send({"t": "ping"})
            await s.wait_for(lambda f: f.get("t") == "pong", what="pong")

    run(scenario())
