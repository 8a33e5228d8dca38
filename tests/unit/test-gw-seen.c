/* gw-seen: the gateway reads conv and seq from the frames chat-consumer
 * writes, and drops a routed (conv, seq) a connection already had. The
 * frames come from the consumer's own cs-frame.c, so a change to their
 * layout that the gateway no longer reads fails here. */
#include "chat-test.h"

#include <string.h>

#include "cs-frame.h"
#include "gw-seen.h"

static chat_event_t event(chat_event_type_t type, const char *conv)
{
    chat_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    snprintf(ev.id, sizeof(ev.id), "01JABCDEFGHJKMNPQRSTVWXYZ0");
    snprintf(ev.conv, sizeof(ev.conv), "%s", conv);
    snprintf(ev.from, sizeof(ev.from), "alice");
    snprintf(ev.dev, sizeof(ev.dev), "c-1");
    snprintf(ev.cid, sizeof(ev.cid), "m-1");
    ev.ts = 1700000000000;
    ev.body = "hi \"there\"";
    ev.body_len = strlen(ev.body);
    ev.target = 1;
    return ev;
}

static void parse_ok(chat_buf_t *b, uint64_t *conv, int64_t *seq)
{
    assert_int_equal(gw_seen_frame_seq(b->data, b->len, conv, seq), 0);
    assert_true(*conv != 0);
}

static void test_reads_every_sequenced_frame(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 1 << 16);
    uint64_t c1, c2, c3, c4;
    int64_t s;
    chat_event_t ev = event(CHAT_EV_MESSAGE, "d.conv1");
    assert_int_equal(cs_frame_message(&b, &ev, 42), 0);
    parse_ok(&b, &c1, &s);
    assert_int_equal(s, 42);
    chat_buf_reset(&b);
    ev = event(CHAT_EV_EDIT, "d.conv1");
    assert_int_equal(cs_frame_change(&b, &ev, 43), 0);
    parse_ok(&b, &c2, &s);
    assert_int_equal(s, 43);
    chat_buf_reset(&b);
    ev = event(CHAT_EV_MEMBER_ADD, "d.conv1");
    snprintf(ev.user, sizeof(ev.user), "carol");
    assert_int_equal(cs_frame_member(&b, &ev, 44), 0);
    parse_ok(&b, &c3, &s);
    assert_int_equal(s, 44);
    /* The same conversation hashes alike whatever the frame; another differs. */
    assert_true(c1 == c2 && c2 == c3);
    chat_buf_reset(&b);
    ev = event(CHAT_EV_MESSAGE, "d.conv2");
    assert_int_equal(cs_frame_message(&b, &ev, 1), 0);
    parse_ok(&b, &c4, &s);
    assert_true(c4 != c1);
    chat_buf_close(&b);
}

static void test_unsequenced_and_malformed_frames_are_not_read(void **state)
{
    (void)state;
    chat_buf_t b;
    chat_buf_init(&b, 1 << 16);
    uint64_t c;
    int64_t s;
    assert_int_equal(cs_frame_receipt(&b, "d.conv1", "bob", CHAT_EV_READ, 7), 0);
    assert_int_equal(gw_seen_frame_seq(b.data, b.len, &c, &s), -1);
    static const char *const bad[] = {
        "",
        "{",
        "{\"t\":\"typing\",\"conv\":\"d.x\",\"user\":\"a\"}",
        "{\"t\":\"message\",\"id\":\"01J\",\"conv\":\"d.x\",\"seq\":}",
        "{\"t\":\"message\",\"id\":\"01J\",\"conv\":\"d.x\",\"seq\":0}",
        "{\"t\":\"message\",\"id\":\"01J\",\"conv\":\"d.x",
        "{\"t\":\"message\",\"id\":\"01J",
        "{\"t\":\"mess",
        "[\"t\",\"message\"]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(gw_seen_frame_seq(bad[i], strlen(bad[i]), &c, &s), -1);
    /* A cut frame is read only as far as its length. */
    const char *full =
        "{\"t\":\"message\",\"id\":\"01J\",\"conv\":\"d.x\",\"seq\":5,\"from\":\"a\"}";
    assert_int_equal(gw_seen_frame_seq(full, 20, &c, &s), -1);
    assert_int_equal(gw_seen_frame_seq(full, strlen(full), &c, &s), 0);
    assert_int_equal(s, 5);
    chat_buf_close(&b);
}

static void test_repeats_are_caught(void **state)
{
    (void)state;
    gw_seen_t *seen = NULL;
    assert_int_equal(gw_seen_repeat(&seen, 11, 1), 0);
    assert_non_null(seen);
    assert_int_equal(gw_seen_repeat(&seen, 11, 1), 1);
    assert_int_equal(gw_seen_repeat(&seen, 11, 2), 0);
    assert_int_equal(gw_seen_repeat(&seen, 11, 1), 1);
    assert_int_equal(gw_seen_repeat(&seen, 22, 1), 0); /* another conversation */
    assert_int_equal(gw_seen_repeat(&seen, 11, 5), 0); /* a gap is not a repeat */
    assert_int_equal(gw_seen_repeat(&seen, 11, 4), 1);
    gw_seen_free(seen);
    gw_seen_free(NULL);
}

static void test_oldest_conversation_is_forgotten(void **state)
{
    (void)state;
    gw_seen_t *seen = NULL;
    for (uint64_t c = 1; c <= GW_SEEN_SLOTS; c++)
        assert_int_equal(gw_seen_repeat(&seen, c, 3), 0);
    for (uint64_t c = 1; c <= GW_SEEN_SLOTS; c++)
        assert_int_equal(gw_seen_repeat(&seen, c, 3), 1);
    /* One more conversation takes the first one's slot. */
    assert_int_equal(gw_seen_repeat(&seen, GW_SEEN_SLOTS + 1, 1), 0);
    assert_int_equal(gw_seen_repeat(&seen, 1, 3), 0);
    assert_int_equal(gw_seen_repeat(&seen, 2, 3), 0);
    gw_seen_free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_every_sequenced_frame),
        cmocka_unit_test(test_unsequenced_and_malformed_frames_are_not_read),
        cmocka_unit_test(test_repeats_are_caught),
        cmocka_unit_test(test_oldest_conversation_is_forgotten),
    };
    return cmocka_run_group_tests_name("gw-seen", tests, NULL, NULL);
}
