"""History (docs/api.md): GET /v1/conversations/{id}/messages pages newest
first with before/limit and a next_before cursor, shows a deleted message
as a tombstone that keeps its seq and an edited one with edited_ts, skips
the edit and delete events themselves, and answers members only."""

import uuid

import pytest

from apilib import Api, error_code, of_type
from chatlib import run, wait_until
from conftest import Clients

N = 120


@pytest.fixture(scope="module")
def history(stack):
    """A conversation of N messages from alice to bob; seq 5 edited, seq 7
    deleted (the edit and the delete are seqs N+1 and N+2). Alice's socket
    is on gw1, so the HTTP reads go to gw2."""
    stack.check_alive()
    a, b = f"hist-a-{uuid.uuid4().hex[:8]}", f"hist-b-{uuid.uuid4().hex[:8]}"
    conv = stack.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(stack) as c:
            sa = await c.connect(a, "gw1")
            sent = [await sa.send_message(conv, f"message {i}", f"h-{i}") for i in range(1, N + 1)]
            await sa.wait_messages(conv, N, timeout=120)
            await sa.send({"t": "edit", "conv": conv, "target": 5, "body": "message 5, edited", "cid": "e-5"})
            await sa.send({"t": "delete", "conv": conv, "target": 7, "cid": "x-7"})
            e = await sa.wait_for(of_type("edit", conv, target=5), what="the edit of seq 5")
            d = await sa.wait_for(of_type("delete", conv, target=7), what="the delete of seq 7")
            assert (e["seq"], d["seq"]) == (N + 1, N + 2), (e, d)
            return sent, e

    sent, edit = run(scenario())
    return {"a": a, "b": b, "conv": conv, "sent": sent, "edit": edit, "api": Api(stack.http("gw2")), "token": stack.token}


def page(h, who="b", **q):
    """One page of the history as `who` sees it through gw2."""
    return h["api"].history(h["token"](h[who]), h["conv"], **q)


@pytest.fixture
def h(history, live):
    return history


def test_pages_newest_first(h):
    seen = []
    before, pages = None, []
    while True:
        status, body = page(h, before=before)  # default limit: 50
        assert status == 200, (before, status, body)
        seqs = [m["seq"] for m in body["messages"]]
        pages.append((before, seqs[:1] + seqs[-1:], len(seqs), body.get("next_before")))
        seen.extend(seqs)
        if "next_before" not in body:
            break
        assert body["next_before"] == seqs[-1], body["next_before"]
        before = body["next_before"]
        assert len(pages) < 10, pages
    assert [p[2] for p in pages] == [50, 50, 20], pages
    assert seen == list(range(N, 0, -1)), "every message once, newest first, no edit or delete event among them"
    assert pages[0][3] == 71 and pages[1][3] == 21, pages


def test_message_fields(h):
    status, body = page(h, limit=100)
    assert status == 200 and len(body["messages"]) == 100 and body["next_before"] == 21, (status, body.get("next_before"))
    status, rest = page(h, before=21, limit=100)
    assert status == 200 and "next_before" not in rest, rest
    by_seq = {m["seq"]: m for m in body["messages"] + rest["messages"]}
    for i, s in enumerate(h["sent"], start=1):
        m = by_seq[i]
        assert m["id"] == s["id"] and m["from"] == h["a"] and m["ts"] == s["ts"] and m.get("cid") == f"h-{i}", m
        if i == 5:
            assert m["body"] == "message 5, edited" and m["edited_ts"] == h["edit"]["ts"], m
            assert "deleted" not in m, m
        elif i == 7:
            # A tombstone: the seq stays, the text is gone.
            assert m.get("deleted") is True and "body" not in m, m
        else:
            assert m["body"] == f"message {i}" and "edited_ts" not in m and "deleted" not in m, m


def test_before_and_limit(h):
    status, body = page(h, before=11, limit=3)
    assert status == 200 and [m["seq"] for m in body["messages"]] == [10, 9, 8] and body["next_before"] == 8, body
    status, body = page(h, before=3, limit=5)
    assert [m["seq"] for m in body["messages"]] == [2, 1] and "next_before" not in body, body
    # A page that ends exactly at seq 1 has no cursor either.
    status, body = page(h, before=51, limit=50)
    assert len(body["messages"]) == 50 and body["messages"][-1]["seq"] == 1 and "next_before" not in body, body.get("next_before")
    status, body = page(h, before=1)
    assert status == 200 and body == {"messages": []}, body
    # `before` past the newest is the same as none.
    status, body = page(h, before=10_000, limit=1)
    assert [m["seq"] for m in body["messages"]] == [N] and body["next_before"] == N, body
    status, body = page(h, limit=1)
    assert [m["seq"] for m in body["messages"]] == [N], body


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=101", "limit=-1", "limit=abc", "limit=", "before=0", "before=-5", "before=x", "before=1.5"]
)
def test_bad_paging(h, query):
    status, body = h["api"].history(h["token"](h["b"]), h["conv"], query=query)
    assert status == 400 and error_code(body) == "bad_request", (query, status, body)


def test_only_members_read_it(h, live, name):
    api = h["api"]
    status, body = api.history(h["token"](name("stranger")), h["conv"])
    assert status == 404 and error_code(body) == "not_found", (status, body)
    status, body = api.history(h["token"](h["b"]), "d.NOSUCHCONVERSATION")
    assert status == 404 and error_code(body) == "not_found", (status, body)
    status, body = api.call("GET", f"/v1/conversations/{h['conv']}/messages")
    assert status == 401 and error_code(body) == "unauthorized", (status, body)
    # Both members read the same, through either gateway.
    assert Api(live.http("gw1")).history(h["token"](h["a"]), h["conv"], limit=100) == page(h, limit=100)


def test_events_are_not_history_entries(h, live):
    """Bob, who never connected, sees the result in history; the events
    themselves (seqs N+1, N+2) are not history entries."""

    def newest():
        status, body = page(h, limit=2)
        return body if status == 200 else None

    body = run(wait_until(newest, what="the newest page"))
    assert [m["seq"] for m in body["messages"]] == [N, N - 1], body
    assert live.mongo.messages.count_documents({"conv": h["conv"]}) == N + 2
