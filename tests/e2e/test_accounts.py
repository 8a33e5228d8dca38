"""Accounts (docs/api.md): register, login, a fresh token, /v1/me, and the
login rate limits per username and per address, counted in Redis across
gateways.

Each test talks from its own loopback address (apilib.loopback_address), so
the per-address login counter it fills is its own and never the one the
rest of the suite shares on 127.0.0.1."""

import random
import string
import time

import pytest

from apilib import FAST_HASH, Api, error_code, gateways, jwt_payload, loopback_address  # noqa: F401
from chatlib import ChatSocket, mint_token, run

PASSWORD = "correct horse battery staple"


def api(live, gid="gw1"):
    return Api(live.http(gid), source=loopback_address())


def test_register_gives_a_token_that_works(live, name):
    user = name("reg")
    a1, a2 = api(live, "gw1"), api(live, "gw2")
    before = int(time.time())
    status, body = a1.register(user, PASSWORD)
    after = int(time.time())
    assert status == 201, (status, body)
    assert set(body) == {"user", "token", "exp"}, body
    assert body["user"] == user
    claims = jwt_payload(body["token"])
    assert claims["sub"] == user and claims["exp"] == body["exp"], claims
    # token_ttl_s defaults to 86,400.
    assert before + 86400 <= body["exp"] <= after + 86400, body["exp"]

    # The token works on the other gateway too: /v1/me and a WebSocket.
    t0 = int(time.time() * 1000)
    status, me = a2.me(body["token"])
    assert status == 200 and me["user"] == user, (status, me)
    assert set(me) == {"user", "created_ts"}, me
    assert (before - 1) * 1000 <= me["created_ts"] <= t0 + 1000, me

    async def ws():
        s = await ChatSocket.connect(live.ws("gw2"), body["token"], validator=live.server_validator)
        try:
            assert s.hello["user"] == user
        finally:
            await s.close()

    run(ws())

    # The password is stored only as an argon2id hash (libsodium's string).
    doc = live.mongo.users.find_one({"_id": user})
    assert doc is not None, "no users document"
    assert doc["hash"].startswith("$argon2id$"), doc["hash"][:20]
    assert PASSWORD not in repr(doc)


def test_register_a_taken_name(live, name):
    user = name("dup")
    status, _ = api(live, "gw1").register(user, PASSWORD)
    assert status == 201
    # Taken whatever the password, through either gateway.
    for gid, pw in (("gw1", PASSWORD), ("gw2", "another password")):
        status, body = api(live, gid).register(user, pw)
        assert status == 409 and error_code(body) == "exists", (gid, status, body)
    assert live.mongo.users.count_documents({"_id": user}) == 1
    # The first password still logs in; the second never replaced it.
    a = api(live)
    assert a.login(user, PASSWORD)[0] == 200
    assert a.login(user, "another password")[0] == 401


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "password": PASSWORD},  # 2 characters
        {"username": "a" * 33, "password": PASSWORD},  # 33 characters
        {"username": "bad name", "password": PASSWORD},
        {"username": "bad/name", "password": PASSWORD},
        {"username": "b\u00e4d-name", "password": PASSWORD},
        {"username": "", "password": PASSWORD},
        {"username": 12345, "password": PASSWORD},
        {"password": PASSWORD},
        {"username": "ok-name", "password": "seven.."},  # 7 bytes
        {"username": "ok-name", "password": "p" * 257},
        {"username": "ok-name", "password": 12345678},
        {"username": "ok-name"},
    ],
    ids=lambda b: "-".join(f"{k}={str(v)[:12]}" for k, v in b.items()),
)
def test_register_bad_input(live, body):
    a = api(live)
    status, answer = a.call("POST", "/v1/register", body)
    assert status == 400 and error_code(answer) == "bad_request", (body, status, answer)
    # The same checks guard login.
    status, answer = a.call("POST", "/v1/login", body)
    assert status == 400 and error_code(answer) == "bad_request", (body, status, answer)
    if isinstance(body.get("username"), str) and body["username"]:
        assert live.mongo.users.count_documents({"_id": body["username"]}) == 0


def test_register_bounds_and_malformed_bodies(live, name):
    a = api(live)
    # The limits themselves are allowed: 3 and 32 characters, 8 and 256 bytes.
    # Three characters leave few names: on a stack that is not wiped, an
    # earlier run may hold one, so a taken one (409) is passed over.
    for _ in range(20):
        short = "".join(random.choices(string.ascii_letters + string.digits + "_.-", k=3))
        status, body = a.register(short, "8 bytes!")
        if status != 409:
            break
    assert status == 201, (short, status, body)
    assert a.login(short, "8 bytes!")[0] == 200
    long_ = name("r")[:9] + "_" * 22 + "."
    assert len(long_) == 32
    status, body = a.register(long_, "p" * 256)
    assert status == 201, (long_, status, body)
    assert a.login(long_, "p" * 256)[0] == 200
    for raw in (b"{not json", b"[]", b"", b'{"username":"dupkey","username":"x","password":"12345678"}'):
        status, body = a.call("POST", "/v1/register", raw=raw)
        assert status == 400 and error_code(body) == "bad_request", (raw, status, body)
    status, body = a.call("GET", "/v1/register")
    assert status == 405 and error_code(body) == "method_not_allowed", (status, body)
    status, body = a.call("GET", "/v1/login")
    assert status == 405 and error_code(body) == "method_not_allowed", (status, body)


def test_login(live, name):
    user = name("login")
    a1, a2 = api(live, "gw1"), api(live, "gw2")
    assert a1.register(user, PASSWORD)[0] == 201

    status, body = a2.login(user, PASSWORD)
    assert status == 200, (status, body)
    assert set(body) == {"user", "token", "exp"} and body["user"] == user, body
    assert jwt_payload(body["token"])["sub"] == user
    status, me = a1.me(body["token"])
    assert status == 200 and me["user"] == user, (status, me)

    # A wrong password and an unknown user get one and the same answer.
    wrong = a1.login(user, PASSWORD + "!")
    unknown = a1.login(name("nobody"), PASSWORD)
    assert wrong[0] == 401 and error_code(wrong[1]) == "bad_credentials", wrong
    assert unknown == wrong, f"unknown user {unknown} differs from wrong password {wrong}"
    # Names are exact: another case is another (unknown) user.
    assert a1.login(user.upper(), PASSWORD)[0] == 401


def test_fresh_token(live, name):
    user = name("tok")
    a = api(live, "gw2")
    # A token that expires in ten minutes, as a client holds before renewing.
    old = mint_token(user, live.secret, ttl=600)
    status, body = a.refresh(old)
    assert status == 200, (status, body)
    assert set(body) == {"user", "token", "exp"} and body["user"] == user, body
    assert body["token"] != old
    assert body["exp"] > jwt_payload(old)["exp"], "the fresh token must expire later"
    assert jwt_payload(body["token"])["exp"] == body["exp"]
    status, me = api(live, "gw1").me(body["token"])
    assert status == 200 and me["user"] == user, (status, me)

    # Only a valid token can be renewed.
    expired = mint_token(user, live.secret, iat=0, exp=1_000_000_000)
    status, err = a.refresh(expired)
    assert status == 401 and error_code(err) == "token_expired", (status, err)
    status, err = a.refresh(mint_token(user, live.secret + "x"))
    assert status == 401 and error_code(err) == "unauthorized", (status, err)
    status, err = a.call("POST", "/v1/token")
    assert status == 401 and error_code(err) == "unauthorized", (status, err)


def test_me_needs_a_token(live, name):
    a = api(live)
    status, err = a.call("GET", "/v1/me")
    assert status == 401 and error_code(err) == "unauthorized", (status, err)
    # A valid token of a user who never registered: the name, no created_ts.
    user = name("ghost")
    status, me = a.me(live.token(user))
    assert status == 200 and me == {"user": user}, (status, me)


def test_login_rate_limit_per_username(live, gateways, name):  # noqa: F811
    """login_user_per_min=3 on two gateways: the attempts on both count
    against one Redis counter per username, whatever the client address;
    the fourth is refused, and then even the right password is."""
    flags = ("--login-user-per-min", "3", *FAST_HASH)
    g1, g2 = gateways.start(*flags, label="lu1"), gateways.start(*flags, label="lu2")
    user, other = name("victim"), name("bystander")
    for gw in (g1, g2, g1):
        status, body = gw.api(loopback_address()).login(user, "wrong password")
        assert status == 401 and error_code(body) == "bad_credentials", (gw.gid, status, body)
    for gw in (g2, g1):
        status, body = gw.api(loopback_address()).login(user, "wrong password")
        assert status == 429 and error_code(body) == "rate_limited", (gw.gid, status, body)
    # The limit is on logins: the name can still be registered, but its
    # logins stay refused for the rest of the minute, right password or not.
    assert g1.api(loopback_address()).register(user, PASSWORD)[0] == 201
    status, body = g2.api(loopback_address()).login(user, PASSWORD)
    assert status == 429 and error_code(body) == "rate_limited", (status, body)
    # Another username is not affected.
    assert g1.api(loopback_address()).register(other, PASSWORD)[0] == 201
    status, body = g2.api(loopback_address()).login(other, PASSWORD)
    assert status == 200, (status, body)


def test_registering_spends_no_login_attempt(live, gateways, name):  # noqa: F811
    """docs/api.md limits login attempts per username; the gateway's own
    comment says registrations count per address only. So a user who just
    registered still has all login_user_per_min logins of the minute."""
    flags = ("--login-user-per-min", "3", *FAST_HASH)
    gw = gateways.start(*flags, label="lr")
    user = name("fresh")
    assert gw.api(loopback_address()).register(user, PASSWORD)[0] == 201
    answers = [gw.api(loopback_address()).login(user, PASSWORD) for _ in range(3)]
    assert [s for s, _ in answers] == [200, 200, 200], f"login_user_per_min=3, after registering: {answers}"
    status, body = gw.api(loopback_address()).login(user, PASSWORD)
    assert status == 429 and error_code(body) == "rate_limited", (status, body)


def test_login_rate_limit_per_address(live, gateways, name):  # noqa: F811
    """login_addr_per_min=3: registrations and logins from one address
    count together; the fourth is refused, another address is not."""
    gw = gateways.start("--login-addr-per-min", "3", *FAST_HASH, label="la")
    here, there = loopback_address(), loopback_address()
    u1, u2 = name("addr1"), name("addr2")
    a = gw.api(here)
    assert a.register(u1, PASSWORD)[0] == 201
    assert a.login(u1, PASSWORD)[0] == 200
    assert a.login(name("unknown"), PASSWORD)[0] == 401
    for what, (status, body) in (("login", a.login(u1, PASSWORD)), ("register", a.register(u2, PASSWORD))):
        assert status == 429 and error_code(body) == "rate_limited", (what, status, body)
    assert live.mongo.users.count_documents({"_id": u2}) == 0
    # The same user from another address logs in.
    status, body = gw.api(there).login(u1, PASSWORD)
    assert status == 200, (status, body)
