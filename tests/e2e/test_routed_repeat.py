"""A consumer that takes over a partition (a rebalance, a crash) re-applies
the events its predecessor stored but had not committed, and routes them
again. The gateway drops a (conv, seq) that a connection was already routed,
so a live client sees each message once. The repeat is published through
the real Redis exactly as chat-consumer publishes routed lines."""

import json
import socket

from chatlib import http_json, run, wait_until
from conftest import REDIS_HOST, REDIS_PORT, Clients


def publish(channel, payload):
    parts = [b"PUBLISH", channel.encode(), payload.encode()]
    cmd = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=5) as s:
        s.sendall(cmd)
        reply = s.recv(64)
    assert reply.startswith(b":"), reply


def compact(frame):
    # The key order of the frame as received is the order the consumer wrote.
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def test_repeat_of_a_routed_message_is_dropped(live, name):
    a, b = name("alice"), name("bob")
    conv = live.create_conversation(a, [b])["id"]

    async def scenario():
        async with Clients(live) as c:
            sa = await c.connect(a, "gw1")
            sb = await c.connect(b, "gw2")
            sent = await sa.send_message(conv, "one", "m-1")
            first = await sb.wait_for(lambda f: f.get("t") == "message" and f.get("id") == sent["id"], what="seq 1 at B")
            assert first["seq"] == 1

            # What a new partition owner does: route seq 1 again, then the
            # next event, seq 2 (made here from the first, as it would be).
            second = dict(first, seq=2, id=first["id"][:-1] + ("0" if first["id"][-1] != "0" else "1"), body="two", cid="m-2")
            publish("gw.gw2", f"{b} -\t{compact(first)}\n{b} -\t{compact(second)}\n")
            got = await sb.wait_for(lambda f: f.get("t") == "message" and f.get("seq") == 2, what="seq 2 at B")
            assert got["body"] == "two"
            # An older seq after a newer one is a repeat too.
            publish("gw.gw2", f"{b} -\t{compact(first)}\n")
            # A receipt (no seq) passes: it is what shows the line was handled.
            receipt = {"t": "receipt", "conv": conv, "user": a, "kind": "read", "upto": 2}
            publish("gw.gw2", f"{b} -\t{compact(receipt)}\n")
            await sb.wait_for(lambda f: f.get("t") == "receipt" and f.get("upto") == 2 and f.get("user") == a, what="the receipt")

            seqs = [f["seq"] for f in sb.frames if f.get("t") == "message" and f.get("conv") == conv]
            assert seqs == [1, 2], seqs

            def repeats():
                status, body = http_json("GET", live.http("gw2") + "/metrics")
                text = body if isinstance(body, str) else ""
                for line in text.splitlines():
                    if line.startswith("chat_gateway_routed_repeats"):
                        return int(line.rsplit(" ", 1)[1]) >= 2
                return False

            await wait_until(repeats, what="routed_repeats >= 2 on gw2")

    run(scenario())
