"""Bad input gets a clear error or a close code and changes nothing: someone
else's conversation, malformed and unknown frames, oversize frames and
bodies, forged, expired and unsigned tokens."""

import json

import pytest

from chatlib import ChatSocket, Rejected, expect_rejected, http_json, mint_token, run, wait_until
from conftest import Clients

MAX_FRAME = 65536
BODY_MAX = 4096


def error_for(cid=None, code=None):
    return lambda f: f.get("t") == "error" and (cid is None or f.get("cid") == cid) and (code is None or f.get("code") == code)


def test_frames_that_are_refused(live, name):
    m, b, c_ = name("mallory"), name("bob"), name("carol")
    conv_bc = live.create_conversation(b, [c_])["id"]
    conv_mb = live.create_conversation(m, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sm = await c.connect(m, "gw1")

            # Someone else's conversation.
            await sm.send({"t": "send", "conv": conv_bc, "cid": "x-1", "body": "let me in"})
            err = await sm.wait_for(lambda f: f.get("t") in ("error", "sent") and f.get("cid") == "x-1", what="the answer to x-1")
            assert err["t"] == "error" and err["code"] == "forbidden" and err["retry"] is False, err

            # Not JSON, not an object, fields missing or of the wrong type.
            for raw in ("{not json", "[1,2,3]", '"send"', json.dumps({"t": "send", "cid": "x-2", "body": "no conv"}),
                        json.dumps({"t": "send", "conv": conv_mb, "cid": "x-3", "body": 7}),
                        json.dumps({"t": "read", "conv": conv_mb, "upto": "many"})):  # fmt: skip
                await sm.send_raw(raw)
                err = await sm.wait_for(error_for(), what=f"an error for {raw!r}")
                assert err["code"] == "bad_frame", (raw, err)
                assert err["retry"] is False

            await sm.send({"t": "shout", "conv": conv_mb})
            err = await sm.wait_for(error_for(), what="an error for an unknown type")
            assert err["code"] == "unknown_type"

            # A body over body_max in a frame under max_frame.
            await sm.send({"t": "send", "conv": conv_mb, "cid": "x-big", "body": "b" * (BODY_MAX + 1)})
            err = await sm.wait_for(error_for(cid="x-big"), what="too_large")
            assert err["code"] == "too_large" and err["retry"] is False

            # The connection survived all that.
            await sm.send({"t": "ping"})
            await sm.wait_for(lambda f: f.get("t") == "pong", what="pong after the errors")

            # A frame over max_frame closes the connection with 1009.
            await sm.send({"t": "send", "conv": conv_mb, "cid": "x-huge", "body": "h" * (MAX_FRAME + 10)})
            code = await sm.wait_closed()
            assert code == 1009, f"close code {code}, want 1009"
            assert not any(f.get("t") == "sent" for f in sm.frames), "nothing of mallory's may be accepted"

            # Nothing of that was stored: markers sent after it by B are the
            # first and only messages of both conversations.
            sb = await c.connect(b, "gw2")
            k1 = await sb.send_message(conv_bc, "marker bc", "mk-1")
            k2 = await sb.send_message(conv_mb, "marker mb", "mk-2")
            for k in (k1, k2):
                await wait_until(lambda: live.mongo.messages.find_one({"_id": k["id"]}), what="a marker in MongoDB")
            assert [d["_id"] for d in live.mongo.messages.find({"conv": conv_bc})] == [k1["id"]]
            assert [(d["_id"], d["seq"]) for d in live.mongo.messages.find({"conv": conv_mb})] == [(k2["id"], 1)]
            assert live.mongo.messages.count_documents({"from": m}) == 0

    run(scenario())


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "expired", "alg_none", "alg_hs512", "no_token", "garbage", "no_exp"],
)
def test_tokens_that_are_refused(live, name, case):
    user = name("eve")
    token = {
        "wrong_secret": lambda: mint_token(user, live.secret + "x"),
        "expired": lambda: mint_token(user, live.secret, iat=0, exp=1_000_000_000),
        "alg_none": lambda: mint_token(user, live.secret, alg="none"),
        # A header that names another algorithm is refused even though the
        # signature is HMAC-SHA256 with the right key: the algorithm is pinned.
        "alg_hs512": lambda: mint_token(user, live.secret, alg="HS512"),
        "no_token": lambda: None,
        "garbage": lambda: "not.a.jwt",
        "no_exp": lambda: mint_token(user, live.secret, claims={"exp": None}),
    }[case]()

    async def scenario():
        for gid in ("gw1", "gw2"):
            status, body = await expect_rejected(live.ws(gid), token)
            assert status == 401, f"{case} on {gid}: HTTP {status}"
            err = json.loads(body)
            assert isinstance(err.get("error"), dict) and err["error"].get("code"), err
        if token:
            # The browsers' way, ?token=, is checked the same.
            with pytest.raises(Rejected) as e:
                s = await ChatSocket.connect(live.ws("gw1"), token, query_token=True)
                await s.close()
            assert e.value.status == 401

    run(scenario())
    # And the HTTP API refuses it as well.
    status, _ = http_json("POST", live.http("gw1") + "/v1/conversations", {"members": ["bob"]}, token=token)
    assert status == 401, f"{case}: POST /v1/conversations answered {status}"
    assert live.mongo.messages.count_documents({"from": user}) == 0
    assert live.mongo.conversations.count_documents({"members": user}) == 0
