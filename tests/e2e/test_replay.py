"""chat-replay rebuilds what was lost: messages sent through the live system
and deleted from MongoDB come back, from a replay of the whole topic from
the beginning without routing, with the same (id, seq) pairs, each once; a
dry run beforehand writes nothing; a second replay over the full store
stores nothing new (docs/operations.md, "Replay")."""

import re
import subprocess

from chatlib import run, wait_until
from conftest import BUILD, KAFKA, MONGO_URI, Clients

PER_CONV = 5
REPLAY_TIMEOUT = 300


def replay(stack, *args):
    """Runs chat-replay over the test topic; returns its summary line."""
    argv = [
        str(BUILD / "consumer" / "chat-replay"),
        "--kafka-brokers", KAFKA,
        "--mongo-uri", MONGO_URI,
        "--from-offset", "beginning",
        "--progress", "0",
        *args,
    ]  # fmt: skip
    out = subprocess.run(argv, env=stack.env, capture_output=True, text=True, timeout=REPLAY_TIMEOUT)
    assert out.returncode == 0, f"chat-replay exited {out.returncode}:\n{out.stderr[-3000:]}"
    lines = [line for line in out.stdout.splitlines() if line.startswith("chat-replay: done")]
    assert len(lines) == 1, f"no summary line:\n{out.stdout}\n{out.stderr[-3000:]}"
    return lines[0]


def count(summary, what):
    m = re.search(rf"{what} (\d+)", summary)
    assert m, f"'{what}' not in the summary: {summary}"
    return int(m.group(1))


def test_replay_restores_deleted_messages(live, name):
    a, b, c = name("alice"), name("bob"), name("carol")
    convs = [live.create_conversation(a, [b])["id"], live.create_conversation(a, [c])["id"]]
    messages = live.mongo.messages

    async def send_all():
        async with Clients(live) as cl:
            sa = await cl.connect(a, "gw1")
            for i in range(PER_CONV):
                for k, conv in enumerate(convs):
                    await sa.send_message(conv, f"replay me {k}.{i}", f"rp-{k}-{i}")

    def stored():
        return sorted((d["conv"], d["_id"], d["seq"]) for d in messages.find({"conv": {"$in": convs}}))

    async def send_and_wait():
        await send_all()
        return await wait_until(lambda: (s := stored()) and len(s) == 2 * PER_CONV and s, what="every message stored")

    before = run(send_and_wait())
    for conv in convs:
        assert sorted(seq for cv, _, seq in before if cv == conv) == list(range(1, PER_CONV + 1))

    messages.delete_many({"conv": {"$in": convs}})
    assert stored() == []
    # A lost store lost its conversations' last_seq too.
    live.mongo.conversations.update_many({"_id": {"$in": convs}}, {"$set": {"last_seq": 0}})

    # A dry run counts what it would store and writes nothing.
    dry = replay(live, "--dry-run")
    assert "dry run" in dry, dry
    assert count(dry, "would store") >= 2 * PER_CONV, dry
    assert stored() == []

    # The real replay brings back the same pairs, once each.
    summary = replay(live)
    assert count(summary, "stored") >= 2 * PER_CONV, summary
    after = stored()
    assert after == before, f"{summary}\nbefore {before}\nafter  {after}"
    assert len({i for _, i, _ in after}) == len(after)
    # The replay leaves last_seq whole (it writes it every batch; the live
    # consumers may also raise it to the same value).
    docs = live.mongo.conversations.find({"_id": {"$in": convs}}, {"last_seq": 1})
    assert sorted(d["last_seq"] for d in docs) == [PER_CONV, PER_CONV]

    # Over a full store a replay is all duplicates.
    again = replay(live)
    assert count(again, "stored") == 0, again
    assert count(again, "duplicates") >= 2 * PER_CONV, again
    assert stored() == before
