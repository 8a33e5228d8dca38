"""The limits of docs/design.md, each with its own answer: frames per
second per connection, connections per user across gateways, new
WebSocket sessions per second per gateway, message body, WebSocket message
and HTTP body size. Each limit is set small on a gateway of the test's own,
so it is reached in a few frames."""

import asyncio
import http.client
import json

from apilib import Api, answer_to, connect, error_code, gateways, live_connections, of_type, request  # noqa: F401
from chatlib import ChatSocket, Rejected, run, wait_until
from conftest import Clients


def test_message_rate(live, gateways, name):  # noqa: F811
    """msg_burst=5 and msg_rate=1 per second: five frames at once pass, the
    next ones (any type) are refused with rate_limited, retry true, and the
    cid of a refused send; sent again later, it goes through."""
    gx = gateways.start("--msg-rate", "1", "--msg-burst", "5", label="rate")
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sb = await c.connect(b, "gw2")
            sa = await connect(c, gx, a, ready=False)  # no sync: the bucket is full
            frames = [{"t": "send", "conv": conv, "cid": f"r-{i}", "body": f"burst {i}"} for i in range(1, 6)]
            frames += [{"t": "ping"}, {"t": "send", "conv": conv, "cid": "r-6", "body": "burst 6"}]
            for f in frames:  # written at once, well within one second
                await sa.send(f)
            for i in range(1, 6):
                ans = await answer_to(sa, f"r-{i}")
                assert ans["t"] == "sent", ans
            limited = await answer_to(sa, "r-6")
            assert limited == {"t": "error", "code": "rate_limited", "message": limited.get("message"), "cid": "r-6", "retry": True}, limited
            ping_err = [f for f in sa.frames if f.get("t") == "error" and "cid" not in f]
            assert len(ping_err) == 1 and ping_err[0]["code"] == "rate_limited" and ping_err[0]["retry"] is True, sa.frames
            assert not any(f.get("t") == "pong" for f in sa.frames), "the refused ping must not be answered"

            # The refused send, sent again (send_message waits and retries
            # while the answer is rate_limited), becomes seq 6.
            sent = await sa.send_message(conv, "burst 6", "r-6")
            got = await sb.wait_messages(conv, 6)
            assert [got[s]["body"] for s in range(1, 7)] == [f"burst {i}" for i in range(1, 7)]
            assert got[6]["id"] == sent["id"]
            assert live.mongo.messages.count_documents({"conv": conv}) == 6

    run(scenario())


def test_connections_per_user(live, gateways, name):  # noqa: F811
    """user_conn_max=2, counted in Redis across gateways: with one
    connection on gx and one on gw1, a third on gx gets the error
    too_many_connections and close 1008, and no hello."""
    gx = gateways.start("--user-conn-max", "2", label="cap")
    u = name("busy")

    async def scenario():
        async with Clients(live) as c:
            await connect(c, gx, u, label="u1")
            u2 = await c.connect(u, "gw1", label="u2")
            assert live_connections(u) == 2
            third = await ChatSocket.connect(gx.ws, live.token(u), validator=live.server_validator, label="u3", wait_hello=False)
            c.sockets.append(third)
            err = await third.wait_for(of_type("error"), what="the refusal")
            assert err["code"] == "too_many_connections" and err["retry"] is True, err
            assert await third.wait_closed() == 1008
            assert [f["t"] for f in third.frames] == ["error"], third.frames
            assert live_connections(u) == 2, "the refused connection is not counted"

            # One leaves: there is room again.
            await u2.close()
            await wait_until(lambda: live_connections(u) == 1, what="one connection left")
            again = await connect(c, gx, u, label="u4")
            assert again.hello["user"] == u

    run(scenario())


def test_new_connections_per_second(live, gateways, name):  # noqa: F811
    """conn_rate=1, conn_burst=2: of three upgrades at once, two open and
    one is refused with HTTP 429 rate_limited; plain HTTP is not limited,
    and a moment later upgrades are admitted again."""
    gx = gateways.start("--conn-rate", "1", "--conn-burst", "2", label="connrate")
    users = [name(f"u{i}") for i in range(3)]

    async def attempt(user):
        try:
            return await ChatSocket.connect(gx.ws, live.token(user), validator=live.server_validator, label=user)
        except Rejected as e:
            return e

    async def scenario():
        async with Clients(live) as c:
            results = await asyncio.gather(*(attempt(u) for u in users))
            opened = [r for r in results if isinstance(r, ChatSocket)]
            c.sockets.extend(opened)
            refused = [r for r in results if isinstance(r, Rejected)]
            assert len(opened) == 2 and len(refused) == 1, results
            assert refused[0].status == 429, refused[0]
            assert error_code(json.loads(refused[0].body)) == "rate_limited", refused[0].body
            for s in opened:
                assert s.hello["gw"] == gx.gid

            status, body = request(gx.http, "GET", "/v1/health")
            assert status == 200, (status, body)

            async def admitted():
                r = await attempt(name("later"))
                if isinstance(r, ChatSocket):
                    c.sockets.append(r)
                    return r
                assert r.status == 429, r
                return None

            deadline = asyncio.get_running_loop().time() + 15
            while (s := await admitted()) is None:
                assert asyncio.get_running_loop().time() < deadline, "no upgrade admitted within 15 s at 1 per second"
                await asyncio.sleep(0.3)

    run(scenario())


def test_body_max(live, gateways, name):  # noqa: F811
    """body_max counts bytes: 4096 bytes pass (ASCII or two-byte UTF-8),
    one byte more is too_large with the cid, retry false; a gateway with
    body_max=100 draws the line at 100."""
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]
    gx = gateways.start("--body-max", "100", label="body")

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            ok = [("k-1", "a" * 4096), ("k-2", "\u00e9" * 2048)]
            for cid, body in ok:
                await sa.send_message(conv, body, cid)
            for cid, body in (("t-1", "a" * 4097), ("t-2", "\u00e9" * 2048 + "a")):
                await sa.send({"t": "send", "conv": conv, "cid": cid, "body": body})
                err = await answer_to(sa, cid)
                assert err["t"] == "error" and err["code"] == "too_large" and err["retry"] is False, err
            got = await sb.wait_messages(conv, 2)
            assert [got[1]["body"], got[2]["body"]] == [body for _, body in ok]

            sx = await connect(c, gx, a)
            await sx.send_message(conv, "x" * 100, "k-3")
            await sx.send({"t": "send", "conv": conv, "cid": "t-3", "body": "x" * 101})
            err = await answer_to(sx, "t-3")
            assert err["t"] == "error" and err["code"] == "too_large", err
            got = await sb.wait_messages(conv, 3)
            assert got[3]["body"] == "x" * 100
            assert live.mongo.messages.count_documents({"conv": conv}) == 3

    run(scenario())


def test_max_frame(live, gateways, name):  # noqa: F811
    """max_frame=1024: a WebSocket message of more is closed with 1009."""
    gx = gateways.start("--max-frame", "1024", label="frame")
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await connect(c, gx, a)
            await sa.send_message(conv, "y" * 900, "f-1")  # frame under 1024
            await sa.send({"t": "send", "conv": conv, "cid": "f-2", "body": "y" * 1100})
            assert await sa.wait_closed() == 1009
            assert not any(f.get("cid") == "f-2" for f in sa.frames)

    run(scenario())


def padded(size, members):
    """A POST /v1/conversations body of exactly size bytes."""
    base = {"members": members, "pad": ""}
    n = size - len(json.dumps(base).encode())
    assert n >= 0
    base["pad"] = "p" * n
    raw = json.dumps(base).encode()
    assert len(raw) == size
    return raw


def test_http_body_max(live, gateways, name):  # noqa: F811
    a, b = name("alice"), name("bob")
    token = live.token(a)
    # The default, 65,536 bytes, on the session's gateways.
    for path in ("/v1/conversations", "/v1/register", "/v1/login"):
        status, body = request(live.http("gw1"), "POST", path, raw=padded(70_000, [b]), token=token)
        assert status == 413 and error_code(body) == "too_large", (path, status, body)

    gx = gateways.start("--http-body-max", "1024", label="httpbody")
    status, body = request(gx.http, "POST", "/v1/conversations", raw=padded(1024, [b]), token=token)
    assert status == 201, (status, body)
    status, body = request(gx.http, "POST", "/v1/conversations", raw=padded(1025, [b]), token=token)
    assert status == 413 and error_code(body) == "too_large", (status, body)

    # Without a Content-Length (chunked), the limit holds all the same.
    conn = http.client.HTTPConnection("127.0.0.1", gx.port, timeout=30)
    try:
        raw = padded(4000, [b])
        chunks = (raw[i : i + 500] for i in range(0, len(raw), 500))
        conn.request("POST", "/v1/conversations", body=chunks, encode_chunked=True,
                     headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})  # fmt: skip
        resp = conn.getresponse()
        status, body = resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()
    assert status == 413 and error_code(body) == "too_large", (status, body)
    # The gateway is fine afterwards.
    assert Api(gx.http).me(token)[0] == 200
