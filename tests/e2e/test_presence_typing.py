"""Typing and presence (docs/protocol.md, docs/api.md): ephemeral, routed
through Redis to the other members' gateways, never stored.

Typing: `start` passes at most once per typing_debounce_ms per connection
and conversation, `stop` always passes, receivers get ttl_ms. Presence: the
members of my conversations hear when my first device connects and when my
last one leaves (across gateways); GET /v1/presence answers for the users I
share a conversation with, and leaves the others out.

HTTP calls go through a gateway where the caller has no WebSocket open
(test_http_beside_live covers the other case)."""

import time

from apilib import Api, connect, count, error_code, gateways, live_connections, of_type  # noqa: F401
from chatlib import run, wait_until
from conftest import Clients

TTL_MS = 6000  # typing_ttl_ms default


def test_typing_start_debounce_stop(live, name):
    a, b, s = name("alice"), name("bob"), name("stranger")
    conv = live.create_conversation(a, [b])["id"]
    live.create_conversation(s, [a])  # a stranger to bob, not to alice

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            sb2 = await c.connect(b, "gw1", label="b2")
            ss = await c.connect(s, "gw2")

            # A first stop: it always passes, and from now on the gateway
            # knows the conversation's members, so what follows is routed
            # in the order it was sent.
            await sa.send({"t": "typing", "conv": conv, "state": "stop"})
            for sock in (sb, sb2):
                f = await sock.wait_for(of_type("typing", conv, user=a, state="stop"), what=f"the first stop at {sock.label}")
                assert f["ttl_ms"] == TTL_MS, f

            # start, start, stop at once: the second start falls within the
            # debounce (2 s) of the first and is not passed on; the stop is.
            for state in ("start", "start", "stop"):
                await sa.send({"t": "typing", "conv": conv, "state": state})
            for sock in (sb, sb2):
                await sock.wait_state(
                    lambda sock=sock: count(sock, "typing", conv, state="stop") >= 2, what=f"the second stop at {sock.label}"
                )
                typing = [f for f in sock.frames if of_type("typing", conv)(f)]
                assert [f["state"] for f in typing] == ["stop", "start", "stop"], typing
                start = typing[1]
                assert start == {"t": "typing", "conv": conv, "user": a, "state": "start", "ttl_ms": TTL_MS}, start

            # Typing is never stored and takes no seq: the next message is 1.
            assert live.mongo.messages.count_documents({"conv": conv}) == 0
            m = await sa.send_message(conv, "done typing", "m-1")
            f = await sb.wait_for(of_type("message", conv, id=m["id"]), what="the message at B")
            assert f["seq"] == 1
            assert live.mongo.messages.count_documents({"conv": conv}) == 1
            # Nobody outside the conversation heard any of it.
            assert count(ss, "typing") == 0, ss.frames

    run(scenario())


def test_typing_debounce_and_ttl_are_settings(live, gateways, name):  # noqa: F811
    """With typing_debounce_ms=0 every start passes, and ttl_ms is the
    gateway's typing_ttl_ms: the count in the test above is the debounce."""
    gx = gateways.start("--typing-debounce-ms", "0", "--typing-ttl-ms", "9000", label="typing")
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await connect(c, gx, a)
            sb = await c.connect(b, "gw2")
            await sa.send({"t": "typing", "conv": conv, "state": "stop"})
            await sb.wait_for(of_type("typing", conv, state="stop"), what="the first stop")
            for state in ("start", "start", "stop"):
                await sa.send({"t": "typing", "conv": conv, "state": state})
            await sb.wait_state(lambda: count(sb, "typing", conv, state="stop") >= 2, what="the second stop")
            typing = [f for f in sb.frames if of_type("typing", conv)(f)]
            assert [f["state"] for f in typing] == ["stop", "start", "start", "stop"], typing
            assert all(f["ttl_ms"] == 9000 and f["user"] == a for f in typing), typing

    run(scenario())


def test_typing_refused(live, name):
    a, b, c_ = name("alice"), name("bob"), name("carol")
    theirs = live.create_conversation(b, [c_])["id"]
    mine = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            await sa.send({"t": "typing", "conv": theirs, "state": "start"})
            err = await sa.wait_for(of_type("error"), what="an error for typing elsewhere")
            assert err["code"] == "forbidden" and err["retry"] is False, err
            for bad in (
                {"t": "typing", "conv": mine, "state": "maybe"},
                {"t": "typing", "conv": mine},
                {"t": "typing", "state": "start"},
                {"t": "typing", "conv": mine, "state": 1},
            ):
                await sa.send(bad)
                err = await sa.wait_for(of_type("error"), what=f"an error for {bad}")
                assert err["code"] == "bad_frame", (bad, err)
            # Then a good one; B hears that one only.
            await sa.send({"t": "typing", "conv": mine, "state": "start"})
            await sb.wait_for(of_type("typing", mine, user=a, state="start"), what="the good start")
            assert [f for f in sb.frames if f.get("t") == "typing"] == [
                {"t": "typing", "conv": mine, "user": a, "state": "start", "ttl_ms": TTL_MS}
            ]

    run(scenario())


def test_presence_first_and_last_device(live, name):
    a, b, s = name("alice"), name("bob"), name("stranger")
    live.create_conversation(a, [b])
    live.create_conversation(s, [a])  # shares nothing with bob
    api = Api(live.http("gw2"))  # alice's socket is on gw1

    def presence(users):
        status, body = api.presence(live.token(a), users)
        assert status == 200, (status, body)
        return body

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            ss = await c.connect(s, "gw2")
            # Bob never connected; the stranger shares a conversation with
            # alice and is online; an outsider shares none and is left out.
            assert presence([b, s, name("outsider")]) == {
                "presence": [{"user": b, "online": False}, {"user": s, "online": True}]
            }

            b1 = await c.connect(b, "gw2", label="b1")
            on = await sa.wait_for(of_type("presence", user=b), what="bob's online at alice")
            assert on == {"t": "presence", "user": b, "online": True}, on
            b2 = await c.connect(b, "gw1", label="b2")  # not his first device: no frame
            assert await wait_until(lambda: live_connections(b) == 2, what="bob's two connections in Redis")
            assert presence([b]) == {"presence": [{"user": b, "online": True}]}

            await b1.close()  # not his last device: no frame
            await wait_until(lambda: live_connections(b) == 1, what="one connection of bob left")
            assert presence([b]) == {"presence": [{"user": b, "online": True}]}

            t1 = int(time.time() * 1000)
            await b2.close()
            off = await sa.wait_for(of_type("presence", user=b, online=False), what="bob's offline at alice")
            t2 = int(time.time() * 1000)
            assert set(off) == {"t", "user", "online", "last_seen"} and t1 - 1000 <= off["last_seen"] <= t2 + 1000, (t1, off, t2)

            body = await wait_until(lambda: (lambda p: p if not p["presence"][0]["online"] else None)(presence([b])), what="bob offline in GET /v1/presence")
            entry = body["presence"][0]
            assert entry["user"] == b and t1 - 1000 <= entry["last_seen"] <= t2 + 1000, (t1, entry, t2)

            # Alice heard exactly one online and one offline of bob; the
            # stranger, who shares no conversation with him, nothing.
            about_b = [f for f in sa.frames if of_type("presence", user=b)(f)]
            assert [f["online"] for f in about_b] == [True, False], about_b
            assert count(ss, "presence", user=b) == 0, ss.frames

    run(scenario())


def test_presence_query(live, name):
    a, b, s = name("alice"), name("bob"), name("stranger")
    live.create_conversation(a, [b])
    api = Api(live.http("gw1"))
    token = live.token(a)

    async def scenario():
        async with Clients(live) as c:
            await c.connect(b, "gw2")
            await c.connect(s, "gw2")
            status, body = await wait_until(lambda: (lambda r: r if r[0] == 200 and r[1]["presence"] and r[1]["presence"][0]["online"] else None)(api.presence(token, [s, b])), what="bob online")
            # Only bob: the stranger is online too, but shares nothing with alice.
            assert body == {"presence": [{"user": b, "online": True}]}, body

    run(scenario())
    status, body = api.call("GET", "/v1/presence?users=", token=token)
    assert status == 200 and body == {"presence": []}, (status, body)
    status, body = api.call("GET", "/v1/presence", token=token)
    assert status == 200 and body == {"presence": []}, (status, body)
    for q in ("users=bad%20name", "users=ok,,also-ok", "users=" + "x" * 65):
        status, body = api.call("GET", "/v1/presence?" + q, token=token)
        assert status == 400 and error_code(body) == "bad_request", (q, status, body)
    status, body = api.call("GET", f"/v1/presence?users={b}")
    assert status == 401 and error_code(body) == "unauthorized", (status, body)
