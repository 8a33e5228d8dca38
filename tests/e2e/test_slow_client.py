"""A client that stops reading while messages keep coming (docs/protocol.md
close code 4001, docs/design.md outbound_max): its gateway closes it
rather than queue without end, counts it in chat_gateway_slow_closes, and
its memory stays bounded; the gateway goes on serving everyone else.

The slow client is a bare socket (apilib.RawWebSocket) with a small receive
buffer, connected to a gateway of this test with outbound_max=16384; the
sender is on gw1. The flood goes on until the gateway reports the close,
within a bound, so nothing here depends on how fast the machine is."""

from apilib import RawWebSocket, gateways, metric, of_type  # noqa: F401
from chatlib import run
from conftest import Clients

BODY = "s" * 4000  # with the frame around it, four of these pass 16 KiB
MAX_MESSAGES = 3000
RSS_LIMIT_KIB = 200 * 1024


def test_slow_client_is_closed(live, gateways, name):  # noqa: F811
    gx = gateways.start(
        "--outbound-max", "16384",
        # Nothing but the slow client's queue may close it.
        "--heartbeat-s", "3600", "--idle-timeout-s", "7200",
        label="slow",
    )  # fmt: skip
    slow, flooder, bystander = name("slow"), name("flooder"), name("bystander")
    conv = live.create_conversation(flooder, [slow])["id"]
    other = live.create_conversation(flooder, [bystander])["id"]
    closes_before = metric(gx.http, "slow_closes")
    rss_start = gx.rss_kib()

    async def scenario():
        async with Clients(live) as c:
            raw = await RawWebSocket.connect(gx.port, live.token(slow), rcvbuf=4096)
            try:
                hello = await raw.wait_text(lambda f: f.get("t") == "hello")
                assert hello["user"] == slow and hello["gw"] == gx.gid, hello
                # From here on the slow client reads nothing.
                sf = await c.connect(flooder, "gw1")
                sbys = await c.connect(bystander, "gw2")

                sent = 0
                rss_peak = rss_start
                while metric(gx.http, "slow_closes") == closes_before:
                    assert sent < MAX_MESSAGES, f"{sent} messages of {len(BODY)} bytes and the slow client is still open"
                    for _ in range(20):
                        sent += 1
                        await sf.send_message(conv, BODY, f"f-{sent}")
                    rss_peak = max(rss_peak, gx.rss_kib())
                assert metric(gx.http, "slow_closes") == closes_before + 1

                # A few more on top, for a closed connection: they must not
                # pile up anywhere.
                for _ in range(40):
                    sent += 1
                    await sf.send_message(conv, BODY, f"f-{sent}")
                await sf.wait_for(of_type("message", conv, cid=f"f-{sent}"), what="the flooder's last message, routed")
                rss_peak = max(rss_peak, gx.rss_kib())
                assert rss_peak < RSS_LIMIT_KIB, f"gateway RSS {rss_peak} KiB (started at {rss_start} KiB) after {sent} messages"
                assert metric(gx.http, "slow_closes") == closes_before + 1, "one slow client, closed once"

                # The gateway still serves others: health, and live delivery
                # through it (the bystander's reply reaches the flooder).
                assert gx.api().call("GET", "/v1/health")[0] == 200
                reply = await sbys.send_message(other, "still there?", "b-1")
                await sf.wait_for(of_type("message", other, id=reply["id"]), what="the bystander's message")

                # The slow client reads again: what was in flight, then the
                # close frame 4001, then the end of the connection.
                assert await raw.drain_until_closed(timeout=60), "the gateway never ended the slow connection"
                code = raw.close_code()
                texts = raw.texts()
                assert code == 4001, f"close code {code}; {len(texts)} frames read, eof error {raw.error!r}"
                assert len(texts) < sent, "the gateway dropped what did not fit"
            finally:
                raw.close()

    run(scenario())
