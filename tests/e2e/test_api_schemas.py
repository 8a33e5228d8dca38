"""schemas/api.v1.json is the HTTP API's contract (docs/api.md), as the
protocol's schemas are the WebSocket's (test_schemas.py): every ```json
block of docs/api.md names its $def in a `<!-- schema: NAME -->` comment
just before it and validates against it, the inline samples of the page do
too, and the bodies real gateways answer match their $defs."""

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from apilib import Api, loopback_address
from chatlib import run, wait_until
from conftest import Clients

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "schemas" / "api.v1.json").read_text())


def validator(name):
    assert name in SCHEMA["$defs"], f"schemas/api.v1.json has no $def {name!r}"
    return Draft202012Validator({"$schema": SCHEMA["$schema"], "$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{name}"})


def problems(name, doc):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(name).iter_errors(doc)]


def api_blocks():
    """(schema name or None, parsed body) of every ```json block of docs/api.md."""
    text = (REPO / "docs" / "api.md").read_text()
    out = []
    for m in re.finditer(r"^(?:<!-- schema: ([A-Za-z0-9_]+) -->\n)?```json\n(.*?)^```", text, re.S | re.M):
        out.append((m.group(1), json.loads(m.group(2))))
    assert len(out) == text.count("```json"), "a ```json block the pattern did not read"
    return out


def test_api_schema_is_valid_2020_12():
    Draft202012Validator.check_schema(SCHEMA)


def test_api_examples_match_schema():
    blocks = api_blocks()
    assert blocks, "docs/api.md has no json examples"
    unnamed = [doc for name, doc in blocks if name is None]
    assert not unnamed, f"json blocks of docs/api.md without a <!-- schema: ... --> comment: {unnamed}"
    bad = [(name, doc, p[:3]) for name, doc in blocks if (p := problems(name, doc))]
    assert not bad, "examples that break their $def:\n" + "\n".join(f"  {n}: {d}: {p}" for n, d, p in bad)


# The bodies docs/api.md gives inline (in prose and tables), by $def.
INLINE = [
    ("token_answer", {"user": "alice", "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", "exp": 1732406400}),
    ("me", {"user": "alice", "created_ts": 1732320000000}),
    ("conversation_create", {"members": ["bob"]}),
    ("conversation_create", {"kind": "group", "members": ["bob", "carol"], "title": "Trip"}),
    ("member_add", {"user": "dave"}),
    ("accepted", {"id": "31NSJ2K8Q4W0E6TR9M3V5XYZAB"}),
    ("health", {"status": "ok", "gateway": "gw1"}),
]


@pytest.mark.parametrize("name,doc", INLINE, ids=[f"{n}{i}" for i, (n, _) in enumerate(INLINE)])
def test_inline_samples_match(name, doc):
    assert problems(name, doc) == []


@pytest.mark.parametrize(
    "name,doc",
    [
        ("error", {"error": {"code": "oops", "message": "?"}}),
        ("error", {"error": {"code": "not_found"}}),
        ("token_answer", {"user": "alice", "token": "eyJ...", "exp": 1}),
        ("conversation_answer", {"id": "d.31NS…", "kind": "direct", "created": True, "members": ["a", "b"]}),
        ("conversation_answer", {"id": "d.x", "kind": "direct", "created": True, "members": ["a"], "title": None}),
        ("conversation_create", {"members": ["bob", "carol"]}),
        ("history", {"messages": [{"id": "...", "seq": 1, "from": "a", "ts": 1, "body": "x"}]}),
        ("history", {"messages": [{"id": "31NSJ2K8Q4W0E6TR9M3V5XYZAB", "seq": 1, "from": "a", "ts": 1}]}),
        ("presence", {"presence": [{"user": "bob", "online": "yes"}]}),
        ("health", {"status": "ok", "gateway": "gw1", "extra": 1}),
        ("credentials", {"username": "al", "password": "correct horse"}),
    ],
)
def test_api_schema_refuses(name, doc):
    assert problems(name, doc), (name, doc)


def test_live_answers_match_schema(live, name):
    """Real answers of a gateway, each validated against its $def."""
    me, bob, carol = name("alice"), name("bob"), name("carol")
    api = Api(live.http("gw1"), source=loopback_address())
    checked = []

    def check(defname, status, body, want):
        assert status == want, (defname, status, body)
        assert problems(defname, body) == [], (defname, body, problems(defname, body))
        checked.append(defname)
        return body

    password = "correct horse battery staple"
    reg = check("token_answer", *api.register(me, password), 201)
    assert reg["user"] == me
    token = check("token_answer", *api.login(me, password), 200)["token"]
    check("token_answer", *api.refresh(token), 200)
    check("me", *api.me(token), 200)
    check("health", *api.call("GET", "/v1/health"), 200)

    direct = check("conversation_answer", *api.create(token, [bob]), 201)
    check("conversation_answer", *api.create(token, [bob]), 200)
    group = check("conversation_answer", *api.create(token, [bob], kind="group", title="schemas"), 201)
    check("accepted", *api.add_member(token, group["id"], carol), 202)

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(me, "gw1")
            sent = await sa.send_message(direct["id"], "checked by schema", "s-1")
            # Stored by a consumer: history shows it once it is written.
            await wait_until(
                lambda: (lambda r: r[0] == 200 and r[1]["messages"])(api.history(token, direct["id"])),
                what="the message in history",
            )
            # While connected, presence answers for a co-member (bob has none).
            status, pres = Api(live.http("gw2")).presence(live.token(bob), [me])
            return sent, status, pres

    sent, pstatus, pres = run(scenario())
    check("presence", pstatus, pres, 200)
    check("presence", *api.presence(token, [bob, carol, "stranger"]), 200)

    listed = check("conversation_list", *api.conversations(token), 200)
    ids = {c["id"]: c for c in listed["conversations"]}
    assert direct["id"] in ids and group["id"] in ids, listed
    assert ids[direct["id"]]["last_message"]["body"] == "checked by schema", ids[direct["id"]]
    hist = check("history", *api.history(token, direct["id"]), 200)
    assert hist["messages"][0]["id"] == sent["id"], hist
    check("history", *api.history(token, direct["id"], limit=1), 200)
    check("history", *api.history(token, group["id"]), 200)

    check("error", *api.history(token, "d.no-such-conversation"), 404)
    check("error", *api.call("GET", "/v1/nothing-here", token=token), 404)
    check("error", *api.me("not-a-token"), 401)
    check("error", *api.call("PUT", "/v1/conversations", {"members": [bob]}, token), 405)
    assert set(checked) >= {"token_answer", "me", "health", "conversation_answer", "accepted", "presence",
                            "conversation_list", "history", "error"}  # fmt: skip
