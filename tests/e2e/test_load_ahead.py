"""A consumer holds the messages that have arrived after its batch (up to
CS_AHEAD_BATCHES batches), and a batch that must load conversations loads
those messages' conversations in the same query (consumer/cs-load.c,
want_ahead). A conversation loaded that way must serve its own batch
exactly as that batch's own load would have: every message stored once,
seqs dense and in send order, each delivered."""

import re

import pytest

from chatlib import run, wait_until
from conftest import CONSUMERS, Clients, Proc


@pytest.mark.timeout(300)
def test_conversations_loaded_ahead_serve_their_batch(live, consumers, name):
    # 14 conversations over 12 partitions: at least two share one. Their
    # messages are sent in turns (a0 b0 a1 b1 ...), so that partition
    # holds them interleaved.
    pairs = [(name("alice"), name("bob")) for _ in range(14)]
    convs = [live.create_conversation(a, [b])["id"] for a, b in pairs]
    per = 3
    # The messages wait in Kafka while no consumer runs; then one consumer
    # with batches of 1 finds them there, a partition's arriving together
    # in one fetch: the batch of a0 must load a, and holds b0 (b not met
    # yet), so b is loaded with it.
    for cid in CONSUMERS:
        assert consumers.stop(cid) == 0, f"consumer {cid} did not stop cleanly"
    ahead = Proc("c-ahead", live._consumer_argv("c-ahead") + ["--batch-max", "1", "--log-level", "debug"], live.env)

    async def scenario():
        async with Clients(live) as c:
            senders = [await c.connect(a, "gw1") for a, _ in pairs]
            readers = [await c.connect(b, "gw2") for _, b in pairs]
            sent = {conv: [] for conv in convs}
            for i in range(per):
                for sock, conv in zip(senders, convs):
                    sent[conv].append(await sock.send_message(conv, f"m {i}", f"m-{i}", timeout=60))
            ahead.start()
            for conv in convs:
                await wait_until(
                    lambda conv=conv: live.mongo.messages.count_documents({"conv": conv}) >= per,
                    timeout=120,
                    what=f"{per} messages of {conv} in MongoDB",
                )
            for conv, reader in zip(convs, readers):
                docs = list(live.mongo.messages.find({"conv": conv}, {"_id": 1, "seq": 1}).sort("seq", 1))
                assert [d["seq"] for d in docs] == list(range(1, per + 1)), f"{conv}: seqs must be dense from 1"
                assert [d["_id"] for d in docs] == [s["id"] for s in sent[conv]], f"{conv}: seq order must be send order"
                have = reader.max_contiguous(conv)
                if have < per:
                    await reader.sync({conv: have}, timeout=60)
                got = await reader.wait_messages(conv, per, timeout=60)
                assert [got[seq]["id"] for seq in sorted(got)] == [d["_id"] for d in docs]

    try:
        run(scenario(), timeout=280)
        assert ahead.stop() == 0, "the consumer did not stop cleanly"
        stats = re.findall(r"stats: .*\((\d+) loaded ahead\)", ahead.log.read_text(errors="replace"))
        assert stats and int(stats[-1]) > 0, "no conversation was loaded for a later batch"
    finally:
        ahead.stop()
        for cid in CONSUMERS:
            consumers.restart(cid)
    live.check_alive()
