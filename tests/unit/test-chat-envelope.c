/* chat-envelope: the Kafka event envelope, encoded by the gateway and
 * decoded by the consumer. Decoding is the trust boundary: it must refuse
 * anything schemas/event.v1.json does not allow. */
#include "chat-test.h"

#include <stdio.h>
#include <string.h>

#include "chat-envelope.h"

#define ID "01HF8Z3K4M5N6P7Q8R9S0T1V2W"

static chat_event_t make_event(chat_event_type_t type)
{
    chat_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    strcpy(ev.id, ID);
    strcpy(ev.conv, "d.alice.bob");
    strcpy(ev.from, "alice");
    strcpy(ev.dev, "c-1f3a");
    strcpy(ev.cid, "m-17");
    ev.ts = INT64_C(1700000000000);
    switch (type) {
    case CHAT_EV_MESSAGE:
        ev.body = "hi";
        ev.body_len = 2;
        break;
    case CHAT_EV_EDIT:
        ev.body = "hi, edited";
        ev.body_len = 10;
        ev.target = 7;
        break;
    case CHAT_EV_DELETE:
        ev.target = 7;
        break;
    case CHAT_EV_DELIVERED:
    case CHAT_EV_READ:
        ev.upto = 42;
        break;
    case CHAT_EV_MEMBER_ADD:
    case CHAT_EV_MEMBER_REMOVE:
        strcpy(ev.user, "carol");
        break;
    default:
        break;
    }
    return ev;
}

static int decode_both(const char *data, size_t len, size_t body_max, chat_error_t *err, int *flat);

/* Encodes ev, decodes the result and checks that every field came back. */
static void assert_round_trip(const chat_event_t *ev)
{
    chat_buf_t buf;
    chat_event_t out;
    chat_error_t err = {0};
    chat_buf_init(&buf, 1 << 16);
    assert_chat_ok(chat_event_encode(ev, &buf));
    int rc = chat_event_decode(buf.data, buf.len, CHAT_BODY_MAX_DEFAULT, &out, &err);
    if (rc != 0)
        fail_msg("decode of %.*s: %s: %s", (int)buf.len, buf.data, chat_err_name(rc), err.message);
    assert_int_equal(out.type, ev->type);
    assert_string_equal(out.id, ev->id);
    assert_string_equal(out.conv, ev->conv);
    assert_string_equal(out.from, ev->from);
    assert_string_equal(out.dev, ev->dev);
    assert_string_equal(out.cid, ev->cid);
    assert_int_equal(out.ts, ev->ts);
    assert_int_equal(out.upto, ev->upto);
    assert_int_equal(out.target, ev->target);
    assert_string_equal(out.user, ev->user);
    assert_int_equal(out.body_len, ev->body_len);
    if (ev->body != NULL)
        assert_memory_equal(out.body, ev->body, ev->body_len);
    else
        assert_null(out.body);
    chat_event_clear(&out);
    int flat;
    assert_chat_ok(decode_both(buf.data, buf.len, CHAT_BODY_MAX_DEFAULT, &err, &flat));
    chat_buf_close(&buf);
}

static void assert_same_event(const chat_event_t *a, const chat_event_t *b)
{
    assert_int_equal(a->type, b->type);
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->conv, b->conv);
    assert_string_equal(a->from, b->from);
    assert_string_equal(a->dev, b->dev);
    assert_string_equal(a->cid, b->cid);
    assert_int_equal(a->ts, b->ts);
    assert_int_equal(a->upto, b->upto);
    assert_int_equal(a->target, b->target);
    assert_string_equal(a->user, b->user);
    assert_int_equal(a->body_len, b->body_len);
    if (a->body != NULL)
        assert_memory_equal(a->body, b->body, a->body_len);
    else
        assert_null(b->body);
}

/* Decodes data[0..len) with chat_event_decode_in and with chat_event_decode
 * (jansson only) and checks that they decide the same and read the same.
 * Returns the decision; *flat says whether the flat path read it (its body
 * points into the scratch area). */
static int decode_both(const char *data, size_t len, size_t body_max, chat_error_t *err, int *flat)
{
    chat_event_t a, b;
    chat_error_t err_b = {0, ""};
    char *scratch = test_malloc(len + 1);
    int rc = chat_event_decode_in(data, len, scratch, body_max, &a, err);
    int rc_b = chat_event_decode(data, len, body_max, &b, &err_b);
    if (rc != rc_b)
        fail_msg("%.*s: decode_in says %s (%s), decode says %s (%s)", (int)len, data,
                 chat_err_name(rc), err->message, chat_err_name(rc_b), err_b.message);
    *flat = 0;
    if (rc == 0) {
        assert_same_event(&a, &b);
        *flat = a.body != NULL && a.body >= scratch && a.body < scratch + len;
        chat_event_clear(&a);
        chat_event_clear(&b);
    }
    test_free(scratch);
    return rc;
}

/* Decodes a NUL-terminated envelope both ways; failures release their
 * memory themselves, so this never calls chat_event_clear after one
 * (LeakSanitizer would report the document otherwise). */
static int decode(const char *json, size_t body_max, chat_error_t *err)
{
    int flat;
    return decode_both(json, strlen(json), body_max, err, &flat);
}

#define ENV_HEAD "{\"v\":1,\"id\":\"" ID "\",\"conv\":\"d.alice.bob\",\"from\":\"alice\","

static void test_type_names_round_trip(void **state)
{
    (void)state;
#define CHECK(name, str)                                                                           \
    assert_string_equal(chat_event_type_name(CHAT_EV_##name), str);                                \
    assert_int_equal(chat_event_type_parse(str), CHAT_EV_##name);
    CHAT_EVENT_TYPES(CHECK)
#undef CHECK
}

static void test_unknown_type_names(void **state)
{
    (void)state;
    assert_null(chat_event_type_name(CHAT_EV_NONE));
    assert_null(chat_event_type_name((chat_event_type_t)99));
    assert_null(chat_event_type_name((chat_event_type_t)-1));
    assert_int_equal(chat_event_type_parse("typing"), CHAT_EV_NONE);
    assert_int_equal(chat_event_type_parse("Message"), CHAT_EV_NONE);
    assert_int_equal(chat_event_type_parse(""), CHAT_EV_NONE);
    assert_int_equal(chat_event_type_parse(NULL), CHAT_EV_NONE);
}

static void test_round_trip_message(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_MESSAGE);
    assert_round_trip(&ev);
}

static void test_round_trip_delivered(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_DELIVERED);
    assert_round_trip(&ev);
}

static void test_round_trip_read(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_READ);
    assert_round_trip(&ev);
}

static void test_round_trip_edit(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_EDIT);
    assert_round_trip(&ev);
}

static void test_round_trip_delete(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_DELETE);
    assert_round_trip(&ev);
}

static void test_round_trip_member_add(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_MEMBER_ADD);
    assert_round_trip(&ev);
}

static void test_round_trip_member_remove(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_MEMBER_REMOVE);
    assert_round_trip(&ev);
}

static void test_round_trip_conv_delete(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_CONV_DELETE);
    assert_round_trip(&ev);
}

static void test_round_trip_without_dev_and_cid(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_MESSAGE);
    ev.dev[0] = '\0';
    ev.cid[0] = '\0';
    assert_round_trip(&ev);
}

static void test_encode_matches_schema_example(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_MESSAGE);
    chat_buf_t buf;
    chat_buf_init(&buf, 4096);
    assert_chat_ok(chat_event_encode(&ev, &buf));
    const char want[] = "{\"v\":1,\"t\":\"message\",\"id\":\"" ID "\",\"conv\":\"d.alice.bob\","
                        "\"from\":\"alice\",\"dev\":\"c-1f3a\",\"cid\":\"m-17\","
                        "\"ts\":1700000000000,\"body\":\"hi\"}";
    assert_int_equal(buf.len, sizeof(want) - 1);
    assert_memory_equal(buf.data, want, buf.len);
    chat_buf_close(&buf);
}

static void test_encode_appends_to_existing_content(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_READ);
    chat_buf_t buf;
    chat_buf_init(&buf, 4096);
    assert_chat_ok(chat_buf_append_str(&buf, "prefix "));
    assert_chat_ok(chat_event_encode(&ev, &buf));
    assert_memory_equal(buf.data, "prefix {\"v\":1,", 14);
    assert_int_equal(buf.data[buf.len - 1], '}');
    chat_buf_close(&buf);
}

static void test_encode_into_small_buffer_is_too_big(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_MESSAGE);
    chat_buf_t buf;
    chat_buf_init(&buf, 64);
    assert_chat_err(chat_event_encode(&ev, &buf), CHAT_ETOOBIG);
    chat_buf_close(&buf);
}

static void test_body_escaping_round_trips(void **state)
{
    (void)state;
    static const char body[] = "she said \"hi\"\\\nline two\r\n\ttab \x01\x1f\x7f"
                               " caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 </script>";
    chat_event_t ev = make_event(CHAT_EV_MESSAGE);
    ev.body = body;
    ev.body_len = sizeof(body) - 1;
    assert_round_trip(&ev);
}

static void test_body_escaping_is_json(void **state)
{
    (void)state;
    chat_event_t ev = make_event(CHAT_EV_MESSAGE);
    ev.body = "a\"b\nc\x02";
    ev.body_len = 6;
    chat_buf_t buf;
    chat_buf_init(&buf, 4096);
    assert_chat_ok(chat_event_encode(&ev, &buf));
    assert_chat_ok(chat_buf_append(&buf, "", 1));
    assert_non_null(strstr(buf.data, "\"body\":\"a\\\"b\\nc\\u0002\"}"));
    chat_buf_close(&buf);
}

static void test_decode_unicode_escapes(void **state)
{
    (void)state;
    const char json[] = ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"\\u00e9\\ud83d\\ude00\"}";
    chat_event_t ev;
    chat_error_t err;
    assert_chat_ok(chat_event_decode(json, sizeof(json) - 1, 64, &ev, &err));
    assert_int_equal(ev.body_len, 6);
    assert_memory_equal(ev.body, "\xc3\xa9\xf0\x9f\x98\x80", 6);
    chat_event_clear(&ev);
}

static void test_decode_body_max_counts_bytes(void **state)
{
    (void)state;
    chat_error_t err;
    /* Two characters, four bytes of UTF-8. */
    assert_chat_ok(
        decode(ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"\xc3\xa9\xc3\xa9\"}", 4, &err));
    assert_chat_err(
        decode(ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"\xc3\xa9\xc3\xa9\"}", 3, &err),
        CHAT_ETOOBIG);
}

static void test_decode_rejects_not_json(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode("{\"v\":1,", 4096, &err), CHAT_EPARSE);
    assert_chat_err(decode("", 4096, &err), CHAT_EPARSE);
    assert_chat_err(decode("hello", 4096, &err), CHAT_EPARSE);
    assert_int_equal(err.code, CHAT_EPARSE);
}

static void test_decode_rejects_not_an_object(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode("[1,2]", 4096, &err), CHAT_EPARSE);
    assert_chat_err(decode("\"message\"", 4096, &err), CHAT_EPARSE);
}

static void test_decode_rejects_wrong_version(void **state)
{
    (void)state;
    chat_error_t err;
    static const char *const bad[] = {
        "{\"v\":2,\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"c\",\"from\":\"a\",\"ts\":1,"
        "\"upto\":1}",
        "{\"v\":\"1\",\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"c\",\"from\":\"a\",\"ts\":1,"
        "\"upto\":1}",
        "{\"v\":1.0,\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"c\",\"from\":\"a\",\"ts\":1,"
        "\"upto\":1}",
        "{\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"c\",\"from\":\"a\",\"ts\":1,\"upto\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_chat_err(decode(bad[i], 4096, &err), CHAT_EPARSE);
}

static void test_decode_rejects_unknown_type(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode(ENV_HEAD "\"t\":\"typing\",\"ts\":1}", 4096, &err), CHAT_EPARSE);
    assert_chat_err(decode(ENV_HEAD "\"t\":1,\"ts\":1}", 4096, &err), CHAT_EPARSE);
    assert_chat_err(decode(ENV_HEAD "\"ts\":1}", 4096, &err), CHAT_EPARSE);
}

static void test_decode_rejects_bad_id_length(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode("{\"v\":1,\"t\":\"read\",\"id\":\"01HF8Z3K4M5N6P7Q8R9S0T1V2\","
                           "\"conv\":\"c\",\"from\":\"a\",\"ts\":1,\"upto\":1}",
                           4096, &err),
                    CHAT_EPARSE);
    assert_chat_err(decode("{\"v\":1,\"t\":\"read\",\"id\":\"01HF8Z3K4M5N6P7Q8R9S0T1V2WX\","
                           "\"conv\":\"c\",\"from\":\"a\",\"ts\":1,\"upto\":1}",
                           4096, &err),
                    CHAT_EPARSE);
    assert_chat_err(decode("{\"v\":1,\"t\":\"read\",\"conv\":\"c\",\"from\":\"a\",\"ts\":1,"
                           "\"upto\":1}",
                           4096, &err),
                    CHAT_EPARSE);
    assert_chat_err(decode("{\"v\":1,\"t\":\"read\",\"id\":26,\"conv\":\"c\",\"from\":\"a\","
                           "\"ts\":1,\"upto\":1}",
                           4096, &err),
                    CHAT_EPARSE);
}

static void test_decode_rejects_bad_conv_chars(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode("{\"v\":1,\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"d alice\","
                           "\"from\":\"a\",\"ts\":1,\"upto\":1}",
                           4096, &err),
                    CHAT_EINVAL);
    assert_non_null(strstr(err.message, "conversation"));
    assert_chat_err(decode("{\"v\":1,\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"\","
                           "\"from\":\"a\",\"ts\":1,\"upto\":1}",
                           4096, &err),
                    CHAT_EINVAL);
}

static void test_decode_rejects_conv_too_long(void **state)
{
    (void)state;
    chat_error_t err;
    char json[512], conv[CHAT_NAME_MAX + 2];
    memset(conv, 'c', sizeof(conv) - 1);
    conv[sizeof(conv) - 1] = '\0';
    snprintf(json, sizeof(json),
             "{\"v\":1,\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"%s\",\"from\":\"a\","
             "\"ts\":1,\"upto\":1}",
             conv);
    assert_chat_err(decode(json, 4096, &err), CHAT_EPARSE);
    conv[CHAT_NAME_MAX] = '\0'; /* 64 characters are allowed */
    snprintf(json, sizeof(json),
             "{\"v\":1,\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"%s\",\"from\":\"a\","
             "\"ts\":1,\"upto\":1}",
             conv);
    assert_chat_ok(decode(json, 4096, &err));
}

static void test_decode_rejects_bad_from_dev_cid(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode("{\"v\":1,\"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"c\","
                           "\"ts\":1,\"upto\":1}",
                           4096, &err),
                    CHAT_EPARSE);
    assert_chat_err(
        decode(ENV_HEAD "\"t\":\"read\",\"ts\":1,\"upto\":1,\"dev\":\"a/b\"}", 4096, &err),
        CHAT_EINVAL);
    assert_chat_err(decode(ENV_HEAD "\"t\":\"read\",\"ts\":1,\"upto\":1,\"cid\":7}", 4096, &err),
                    CHAT_EPARSE);
}

static void test_decode_rejects_body_too_big(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_ok(decode(ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"12345\"}", 5, &err));
    assert_chat_err(decode(ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"123456\"}", 5, &err),
                    CHAT_ETOOBIG);
    assert_int_equal(err.code, CHAT_ETOOBIG);
}

static void test_decode_rejects_empty_body(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode(ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"\"}", 4096, &err),
                    CHAT_EINVAL);
    assert_chat_err(decode(ENV_HEAD "\"t\":\"message\",\"ts\":1}", 4096, &err), CHAT_EINVAL);
    assert_chat_err(
        decode(ENV_HEAD "\"t\":\"edit\",\"ts\":1,\"target\":3,\"body\":\"\"}", 4096, &err),
        CHAT_EINVAL);
}

static void test_decode_rejects_body_not_string(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode(ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":[\"hi\"]}", 4096, &err),
                    CHAT_EPARSE);
}

static void test_decode_rejects_receipt_without_upto(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode(ENV_HEAD "\"t\":\"read\",\"ts\":1}", 4096, &err), CHAT_EINVAL);
    assert_chat_err(decode(ENV_HEAD "\"t\":\"delivered\",\"ts\":1,\"upto\":0}", 4096, &err),
                    CHAT_EINVAL);
    assert_non_null(strstr(err.message, "upto"));
    assert_chat_err(decode(ENV_HEAD "\"t\":\"read\",\"ts\":1,\"upto\":\"5\"}", 4096, &err),
                    CHAT_EPARSE);
}

static void test_decode_rejects_edit_delete_without_target(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode(ENV_HEAD "\"t\":\"delete\",\"ts\":1}", 4096, &err), CHAT_EINVAL);
    assert_chat_err(decode(ENV_HEAD "\"t\":\"edit\",\"ts\":1,\"body\":\"x\"}", 4096, &err),
                    CHAT_EINVAL);
    assert_chat_err(decode(ENV_HEAD "\"t\":\"delete\",\"ts\":1,\"target\":-1}", 4096, &err),
                    CHAT_EINVAL);
}

static void test_decode_rejects_member_event_without_user(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_ok(
        decode(ENV_HEAD "\"t\":\"member_add\",\"ts\":1,\"user\":\"carol\"}", 4096, &err));
    assert_chat_err(decode(ENV_HEAD "\"t\":\"member_add\",\"ts\":1}", 4096, &err), CHAT_EINVAL);
    assert_chat_err(
        decode(ENV_HEAD "\"t\":\"member_remove\",\"ts\":1,\"user\":\"a b\"}", 4096, &err),
        CHAT_EINVAL);
    assert_chat_err(decode(ENV_HEAD "\"t\":\"member_remove\",\"ts\":1,\"user\":[]}", 4096, &err),
                    CHAT_EPARSE);
}

static void test_decode_rejects_bad_ts(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(decode(ENV_HEAD "\"t\":\"read\",\"upto\":1}", 4096, &err), CHAT_EINVAL);
    assert_chat_err(decode(ENV_HEAD "\"t\":\"read\",\"ts\":0,\"upto\":1}", 4096, &err),
                    CHAT_EINVAL);
    assert_chat_err(decode(ENV_HEAD "\"t\":\"read\",\"ts\":1.5,\"upto\":1}", 4096, &err),
                    CHAT_EPARSE);
}

static void test_decode_rejects_duplicate_keys(void **state)
{
    (void)state;
    chat_error_t err;
    /* A second "from" could otherwise smuggle a different sender past a
     * reader that takes the first. */
    assert_chat_err(
        decode(ENV_HEAD "\"t\":\"read\",\"ts\":1,\"upto\":1,\"from\":\"mallory\"}", 4096, &err),
        CHAT_EPARSE);
    assert_chat_err(
        decode(ENV_HEAD "\"t\":\"read\",\"t\":\"read\",\"ts\":1,\"upto\":1}", 4096, &err),
        CHAT_EPARSE);
}

static void test_decode_uses_len_not_nul(void **state)
{
    (void)state;
    /* A Kafka payload is not NUL-terminated: decode reads exactly len. */
    const char json[] = ENV_HEAD "\"t\":\"read\",\"ts\":1,\"upto\":1}GARBAGE";
    chat_event_t ev;
    chat_error_t err;
    assert_chat_ok(chat_event_decode(json, sizeof(json) - 1 - 7, 4096, &ev, &err));
    chat_event_clear(&ev);
    assert_chat_err(chat_event_decode(json, sizeof(json) - 1, 4096, &ev, &err), CHAT_EPARSE);
}

/* The flat path reads the common envelope; everything it does not take as
 * it is goes to jansson, and the two agree on every one (decode_both). */
static void test_decode_in_agrees_with_jansson(void **state)
{
    (void)state;
    chat_error_t err;
    int flat;
    const char *plain = ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"h\xc3\xa9llo\"}";
    assert_chat_ok(decode_both(plain, strlen(plain), 4096, &err, &flat));
    assert_true(flat);
    static const struct {
        const char *json;
        int rc;
    } cases[] = {
        /* Jansson's: escapes, whitespace, unknown members, nested values. */
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"a\\\"b\\u00e9\"}", 0},
        {" { \"v\" : 1 , \"t\":\"read\",\"id\":\"" ID "\",\"conv\":\"c\",\"from\":\"a\","
         "\"ts\":1,\"upto\":3 } ",
         0},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"x\",\"extra\":true,\"n\":null}", 0},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"x\",\"meta\":{\"a\":[1]}}", 0},
        /* Refused either way. */
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"\xff\xfe\"}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"x\",\"\xc3\":1}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"\xed\xa0\x80\"}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":\"1\",\"body\":\"x\"}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":7}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":null}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"dev\":5,\"body\":\"x\"}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1.5,\"body\":\"x\"}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":99999999999999999999,\"body\":\"x\"}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"x\",\"ts\":2}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":7,\"ts\":1,\"body\":\"x\"}", CHAT_EPARSE},
        {ENV_HEAD "\"ts\":1,\"body\":\"x\"}", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"x\"} trailing", CHAT_EPARSE},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"tab\there\"}", CHAT_EPARSE},
        /* Read, then refused by validation, the same way. */
        {ENV_HEAD "\"t\":\"message\",\"ts\":0,\"body\":\"x\"}", CHAT_EINVAL},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"\"}", CHAT_EINVAL},
        {ENV_HEAD "\"t\":\"read\",\"ts\":1}", CHAT_EINVAL},
        {ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"0123456789\"}", CHAT_ETOOBIG},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = decode_both(cases[i].json, strlen(cases[i].json), 8, &err, &flat);
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): %s, expected %s", i, cases[i].json, chat_err_name(rc),
                     chat_err_name(cases[i].rc));
    }
    /* Names too long for their field: test_decode_rejects_conv_too_long,
     * whose decode() reads both ways too. */
}

static void test_validate_accepts_each_type(void **state)
{
    (void)state;
    chat_error_t err;
    int n = 0;
#define CHECK(name, str)                                                                           \
    do {                                                                                           \
        chat_event_t ev = make_event(CHAT_EV_##name);                                              \
        assert_chat_ok(chat_event_validate(&ev, CHAT_BODY_MAX_DEFAULT, &err));                     \
        n++;                                                                                       \
    } while (0);
    CHAT_EVENT_TYPES(CHECK)
#undef CHECK
    assert_true(n >= 8);
}

static void test_validate_rejects_type_none(void **state)
{
    (void)state;
    chat_error_t err;
    chat_event_t ev = make_event(CHAT_EV_MESSAGE);
    ev.type = CHAT_EV_NONE;
    assert_chat_err(chat_event_validate(&ev, CHAT_BODY_MAX_DEFAULT, &err), CHAT_EINVAL);
    ev.type = (chat_event_type_t)42;
    assert_chat_err(chat_event_validate(&ev, CHAT_BODY_MAX_DEFAULT, &err), CHAT_EINVAL);
}

static void test_clear_is_safe_on_zeroed_and_cleared_events(void **state)
{
    (void)state;
    chat_event_t ev;
    memset(&ev, 0, sizeof(ev));
    chat_event_clear(&ev);
    const char json[] = ENV_HEAD "\"t\":\"message\",\"ts\":1,\"body\":\"x\"}";
    chat_error_t err;
    assert_chat_ok(chat_event_decode(json, sizeof(json) - 1, 4096, &ev, &err));
    chat_event_clear(&ev);
    assert_null(ev.body);
    chat_event_clear(&ev);
}

static void test_clear_after_failed_decode_is_safe(void **state)
{
    (void)state;
    /* Callers may also clear after a failure; that must not double free. */
    chat_event_t ev;
    chat_error_t err;
    const char json[] = ENV_HEAD "\"t\":\"read\",\"ts\":1}";
    assert_chat_err(chat_event_decode(json, sizeof(json) - 1, 4096, &ev, &err), CHAT_EINVAL);
    chat_event_clear(&ev);
    chat_event_clear(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names_round_trip),
        cmocka_unit_test(test_decode_in_agrees_with_jansson),
        cmocka_unit_test(test_unknown_type_names),
        cmocka_unit_test(test_round_trip_message),
        cmocka_unit_test(test_round_trip_delivered),
        cmocka_unit_test(test_round_trip_read),
        cmocka_unit_test(test_round_trip_edit),
        cmocka_unit_test(test_round_trip_delete),
        cmocka_unit_test(test_round_trip_member_add),
        cmocka_unit_test(test_round_trip_member_remove),
        cmocka_unit_test(test_round_trip_conv_delete),
        cmocka_unit_test(test_round_trip_without_dev_and_cid),
        cmocka_unit_test(test_encode_matches_schema_example),
        cmocka_unit_test(test_encode_appends_to_existing_content),
        cmocka_unit_test(test_encode_into_small_buffer_is_too_big),
        cmocka_unit_test(test_body_escaping_round_trips),
        cmocka_unit_test(test_body_escaping_is_json),
        cmocka_unit_test(test_decode_unicode_escapes),
        cmocka_unit_test(test_decode_body_max_counts_bytes),
        cmocka_unit_test(test_decode_rejects_not_json),
        cmocka_unit_test(test_decode_rejects_not_an_object),
        cmocka_unit_test(test_decode_rejects_wrong_version),
        cmocka_unit_test(test_decode_rejects_unknown_type),
        cmocka_unit_test(test_decode_rejects_bad_id_length),
        cmocka_unit_test(test_decode_rejects_bad_conv_chars),
        cmocka_unit_test(test_decode_rejects_conv_too_long),
        cmocka_unit_test(test_decode_rejects_bad_from_dev_cid),
        cmocka_unit_test(test_decode_rejects_body_too_big),
        cmocka_unit_test(test_decode_rejects_empty_body),
        cmocka_unit_test(test_decode_rejects_body_not_string),
        cmocka_unit_test(test_decode_rejects_receipt_without_upto),
        cmocka_unit_test(test_decode_rejects_edit_delete_without_target),
        cmocka_unit_test(test_decode_rejects_member_event_without_user),
        cmocka_unit_test(test_decode_rejects_bad_ts),
        cmocka_unit_test(test_decode_rejects_duplicate_keys),
        cmocka_unit_test(test_decode_uses_len_not_nul),
        cmocka_unit_test(test_validate_accepts_each_type),
        cmocka_unit_test(test_validate_rejects_type_none),
        cmocka_unit_test(test_clear_is_safe_on_zeroed_and_cleared_events),
        cmocka_unit_test(test_clear_after_failed_decode_is_safe),
    };
    return cmocka_run_group_tests_name("chat-envelope", tests, NULL, NULL);
}
