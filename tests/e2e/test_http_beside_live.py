"""A client uses the HTTP API and its WebSocket on the same gateway: that is
what the web client does (it lists conversations and pages history through
the gateway it is connected to). An HTTP request must not disturb the live
delivery of the same user's WebSockets there."""

import asyncio

import pytest

from apilib import Api, of_type
from chatlib import run
from conftest import Clients

CALLS = {
    "me": lambda api, token, conv: api.me(token),
    "conversations": lambda api, token, conv: api.conversations(token),
    "history": lambda api, token, conv: api.history(token, conv),
    "token": lambda api, token, conv: api.refresh(token),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_http_call_keeps_live_delivery(live, name, call):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            a1 = await c.connect(a, "gw1", label="a@gw1")
            a2 = await c.connect(a, "gw2", label="a@gw2")
            sb = await c.connect(b, "gw2")
            first = await sb.send_message(conv, "before", "b-1")
            for s in (a1, a2):
                await s.wait_for(of_type("message", conv, id=first["id"]), what=f"the first message at {s.label}")

            # Alice asks gw1 something over HTTP, on a connection of its own.
            status, body = await asyncio.to_thread(CALLS[call], Api(live.http("gw1")), live.token(a), conv)
            assert status == 200, (call, status, body)

            second = await sb.send_message(conv, f"after GET {call}", "b-2")
            # Her other device on gw2 gets it: it was routed...
            await a2.wait_for(of_type("message", conv, id=second["id"]), what="the second message at a@gw2")
            # ...and so must her device on gw1, where she made the request.
            m = await a1.wait_for(of_type("message", conv, id=second["id"]), timeout=15, what=f"the second message at a@gw1 after {call}")
            assert m["seq"] == 2

    run(scenario())
