"""The JSON Schemas in schemas/ are the protocol's contract: every JSON
example in docs/protocol.md validates against the client or server schema
(chosen by `t`), samples of the Kafka envelope validate against
event.v1.json, frames that break the rules do not, and the envelopes the
gateways really produce to Kafka match it too."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from chatlib import FrameValidator, run
from conftest import KAFKA, Clients

REPO = Path(__file__).resolve().parents[2]
EVENT_ID = "3KQ7TBQ4X6M3Y0E6N9V4W2R1AB"


def load(name):
    return FrameValidator(REPO / "schemas" / name)


def errors(validator, doc):
    return validator.errors(doc)


def protocol_examples():
    """Every JSON object in a ```json block of docs/protocol.md, with the
    direction its section gives it ("## Client → server" or "## Server →
    client...", else None). A block holds one object, or one per line."""
    text = (REPO / "docs" / "protocol.md").read_text()
    out = []
    direction = None
    for m in re.finditer(r"^## ([^\n]*)$|^```json\n(.*?)^```", text, re.S | re.M):
        if m.group(1) is not None:
            h = m.group(1).lower()
            direction = "client" if h.startswith("client") else "server" if h.startswith("server") else None
            continue
        block = m.group(2)
        try:
            docs = [json.loads(block)]
        except ValueError:
            docs = [json.loads(line) for line in block.splitlines() if line.strip()]
        out.extend((direction, d) for d in docs)
    return out


def test_schemas_are_valid_2020_12():
    for name in ("client.v1.json", "server.v1.json", "event.v1.json"):
        Draft202012Validator.check_schema(json.loads((REPO / "schemas" / name).read_text()))
        assert load(name).types, f"{name}: no alternatives by t"


def test_protocol_examples_match_schemas():
    client, server = load("client.v1.json"), load("server.v1.json")
    ctypes, stypes = client.types, server.types
    examples = protocol_examples()
    assert examples, "docs/protocol.md has no json examples"
    # The page and the schemas describe the same frames: an example of every
    # type each schema allows, and no example of a type it does not.
    shown = {(d, e.get("t")) for d, e in examples}
    for direction, types in (("client", ctypes), ("server", stypes)):
        assert {t for d, t in shown if d == direction} == types, f"{direction} frames in the doc vs the schema"
    bad = []
    for direction, ex in examples:
        t = ex.get("t")
        if direction is None:  # outside both sections: the type decides
            assert (t in ctypes) != (t in stypes), f"cannot tell the direction of {ex}"
            direction = "client" if t in ctypes else "server"
        problems = errors(client if direction == "client" else server, ex)
        if problems:
            bad.append((ex, problems[:3]))
    assert not bad, "examples that break their schema:\n" + "\n".join(f"  {ex}: {p}" for ex, p in bad)


@pytest.mark.parametrize(
    "frame",
    [
        {"t": "send", "conv": "d.a.b", "cid": "m-1", "body": "hi", "from": "mallory"},  # no sender field
        {"t": "send", "conv": "d.a b", "cid": "m-1", "body": "hi"},
        {"t": "send", "conv": "d.a.b", "cid": "x" * 65, "body": "hi"},
        {"t": "send", "conv": "d.a.b", "cid": "m-1", "body": ""},
        {"t": "send", "conv": "d.a.b", "cid": "m-1", "body": "b" * 4097},
        {"t": "read", "conv": "d.a.b", "upto": 0},
        {"t": "delivered", "conv": "d.a.b", "upto": "3"},
        {"t": "sync", "have": {"d.a.b": -1}},
        {"t": "sync", "have": {"bad id": 1}},
        {"t": "shout"},
        {"conv": "d.a.b"},
    ],
)
def test_client_schema_refuses(frame):
    assert errors(load("client.v1.json"), frame), frame


@pytest.mark.parametrize(
    "frame",
    [
        {"t": "sent", "cid": "m-1", "id": "01jd3m8x2q", "conv": "d.a.b", "ts": 1},
        {"t": "message", "id": EVENT_ID, "conv": "d.a.b", "seq": 0, "from": "a", "ts": 1, "body": "x"},
        {"t": "receipt", "conv": "d.a.b", "user": "b", "kind": "seen", "upto": 3},
        {"t": "error", "code": "oops", "message": "?", "retry": False},
        {"t": "hello", "user": "a", "conn": "c-1", "gw": "gw1", "extra": 1},
    ],
)
def test_server_schema_refuses(frame):
    assert errors(load("server.v1.json"), frame), frame


ENVELOPES = [
    {"v": 1, "t": "message", "id": EVENT_ID, "conv": "d.alice.bob", "from": "alice", "dev": "c-1f3a", "cid": "m-17", "ts": 1700000000000, "body": "hi"},
    {"v": 1, "t": "message", "id": EVENT_ID, "conv": "g.01JD3M", "from": "alice", "ts": 1700000000000, "body": "no dev, no cid"},
    {"v": 1, "t": "delivered", "id": EVENT_ID, "conv": "d.alice.bob", "from": "bob", "dev": "c-2", "ts": 1700000000001, "upto": 17},
    {"v": 1, "t": "read", "id": EVENT_ID, "conv": "d.alice.bob", "from": "bob", "ts": 1700000000002, "upto": 15},
    {"v": 1, "t": "edit", "id": EVENT_ID, "conv": "d.alice.bob", "from": "alice", "ts": 1700000000003, "target": 17, "body": "hi!"},
    {"v": 1, "t": "delete", "id": EVENT_ID, "conv": "d.alice.bob", "from": "alice", "ts": 1700000000004, "target": 17},
]  # fmt: skip


@pytest.mark.parametrize("env", ENVELOPES, ids=[e["t"] + str(i) for i, e in enumerate(ENVELOPES)])
def test_envelope_samples_match(env):
    assert errors(load("event.v1.json"), env) == []


@pytest.mark.parametrize(
    "change",
    [{"v": 2}, {"id": "01J"}, {"from": None}, {"t": "typing"}, {"body": ""}, {"upto": 3}, {"ts": 0}, {"extra": True}],
    ids=["version", "short-id", "no-from", "unknown-type", "empty-body", "upto-on-message", "zero-ts", "extra-field"],
)
def test_envelope_schema_refuses(change):
    env = dict(ENVELOPES[0])
    for k, v in change.items():
        if v is None:
            env.pop(k)
        else:
            env[k] = v
    assert errors(load("event.v1.json"), env), env


def test_envelopes_in_kafka_match(live, name):
    """What the gateways really produce: a message and both receipts."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing (scripts/deps.sh installs it)"
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            sent = await sa.send_message(conv, "enveloped", "e-1")
            await sb.send({"t": "delivered", "conv": conv, "upto": 1})
            await sb.send({"t": "read", "conv": conv, "upto": 1})
            await sa.wait_for(lambda f: f.get("t") == "receipt" and f.get("kind") == "read", what="the read receipt")
            return sent, sa.conn, sb.conn

    sent, dev_a, dev_b = run(scenario())
    topic = os.environ.get("CHAT_TOPIC", "chat.events")
    out = subprocess.run(
        [kcat, "-C", "-b", KAFKA, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    envelopes = [json.loads(line.split("\t", 1)[1]) for line in out.stdout.splitlines() if line.startswith(conv + "\t")]
    kinds = sorted(e.get("t") for e in envelopes)
    assert kinds == ["delivered", "message", "read"], envelopes
    validator = load("event.v1.json")
    for env in envelopes:
        assert errors(validator, env) == [], env
        assert env["conv"] == conv
    msg = next(e for e in envelopes if e["t"] == "message")
    assert msg["id"] == sent["id"] and msg["from"] == a and msg["dev"] == dev_a and msg["cid"] == "e-1"
    assert msg["ts"] == sent["ts"] and msg["body"] == "enveloped"
    for e in envelopes:
        if e["t"] != "message":
            assert e["from"] == b and e["upto"] == 1 and e.get("dev") == dev_b
