/* chat-json: the flat reader takes the common client frame and gives up on
 * everything else, which jansson then reads; so what it accepts must be
 * exactly what jansson reads the same way. */
#include "chat-test.h"

#include <jansson.h>
#include <string.h>

#include "chat-json.h"

/* Reads text with a writable copy; returns the reader's answer. */
static int flat(const char *text, chat_json_flat_t *o, char *copy, size_t size)
{
    size_t n = strlen(text);
    assert_true(n < size);
    memcpy(copy, text, n + 1);
    return chat_json_flat_read(copy, n, o);
}

static void test_reads_a_send_frame(void **state)
{
    (void)state;
    char buf[512];
    chat_json_flat_t o;
    assert_int_equal(flat(" {\"t\":\"send\", \"conv\" : "
                          "\"d.abc\",\"cid\":\"m-1\",\"body\":\"h\xc3\xa9llo\",\"n\":-42,"
                          "\"ok\":true,\"z\":null}\r\n",
                          &o, buf, sizeof(buf)),
                     0);
    assert_int_equal(o.n, 7);
    const chat_json_member_t *m = chat_json_flat_get(&o, "conv");
    assert_non_null(m);
    assert_int_equal(m->type, CHAT_JSON_STRING);
    assert_string_equal(m->str, "d.abc");
    assert_int_equal(m->len, 5);
    m = chat_json_flat_get(&o, "body");
    assert_string_equal(m->str, "h\xc3\xa9llo");
    assert_int_equal(m->len, 6);
    m = chat_json_flat_get(&o, "n");
    assert_int_equal(m->type, CHAT_JSON_INT);
    assert_int_equal(m->num, -42);
    assert_int_equal(chat_json_flat_get(&o, "ok")->type, CHAT_JSON_LITERAL);
    assert_null(chat_json_flat_get(&o, "missing"));
    assert_int_equal(flat("{}", &o, buf, sizeof(buf)), 0);
    assert_int_equal(o.n, 0);
}

static void test_integer_limits(void **state)
{
    (void)state;
    char buf[128];
    chat_json_flat_t o;
    assert_int_equal(flat("{\"a\":9223372036854775807,\"b\":-9223372036854775808,\"c\":0,\"d\":-0}",
                          &o, buf, sizeof(buf)),
                     0);
    assert_true(chat_json_flat_get(&o, "a")->num == INT64_MAX);
    assert_true(chat_json_flat_get(&o, "b")->num == INT64_MIN);
    assert_int_equal(chat_json_flat_get(&o, "c")->num, 0);
    assert_int_equal(chat_json_flat_get(&o, "d")->num, 0);
}

/* Each of these the flat reader leaves to jansson: not flat, not JSON, or
 * needing more than it does. */
static void test_gives_up_on_everything_else(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "",
        "   ",
        "[1,2]",
        "\"send\"",
        "{",
        "{\"t\"}",
        "{\"t\":}",
        "{\"t\":\"send\",}",
        "{\"t\":\"send\" \"x\":1}",
        "{\"t\":\"send\"} x",
        "{\"t\":\"send\"}{}",
        "{\"t\":\"se\\nnd\"}",             /* an escape */
        "{\"t\\u0000\":\"send\"}",         /* an escape in a key */
        "{\"t\":\"a\tb\"}",                /* a raw control character */
        "{\"t\":\"send\",\"t\":\"read\"}", /* a repeated key */
        "{\"have\":{\"d.x\":1}}",          /* nested */
        "{\"a\":[1]}",
        "{\"a\":1.5}",
        "{\"a\":1e3}",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":\"unterminated}",
        "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,\"k\":"
        "11,"
        "\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16,\"q\":17}",
    };
    char buf[512];
    chat_json_flat_t o;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (flat(cases[i], &o, buf, sizeof(buf)) != -1)
            fail_msg("accepted: %s", cases[i]);
    }
}

/* Whatever the flat reader accepts, jansson reads to the same members. */
static void test_agrees_with_jansson(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{\"t\":\"send\",\"conv\":\"d.x\",\"body\":\"hi there\",\"cid\":\"c-1\"}",
        "{\"t\":\"read\",\"conv\":\"d.x\",\"upto\":12}",
        "{\"t\":\"typing\",\"conv\":\"g.y\",\"state\":\"start\",\"extra\":false}",
        " { \"a\" : -7 , \"b\" : \"\xe2\x82\xac\" } ",
    };
    char buf[512];
    chat_json_flat_t o;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(flat(cases[i], &o, buf, sizeof(buf)), 0);
        json_error_t jerr;
        json_t *root = json_loads(cases[i], JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(root);
        assert_int_equal(json_object_size(root), o.n);
        for (size_t k = 0; k < o.n; k++) {
            json_t *v = json_object_get(root, o.m[k].key);
            assert_non_null(v);
            if (o.m[k].type == CHAT_JSON_STRING) {
                assert_true(json_is_string(v));
                assert_int_equal(json_string_length(v), o.m[k].len);
                assert_memory_equal(json_string_value(v), o.m[k].str, o.m[k].len);
            } else if (o.m[k].type == CHAT_JSON_INT) {
                assert_true(json_is_integer(v));
                assert_true(json_integer_value(v) == o.m[k].num);
            } else {
                assert_true(json_is_true(v) || json_is_false(v) || json_is_null(v));
            }
        }
        json_decref(root);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_a_send_frame),
        cmocka_unit_test(test_integer_limits),
        cmocka_unit_test(test_gives_up_on_everything_else),
        cmocka_unit_test(test_agrees_with_jansson),
    };
    return cmocka_run_group_tests_name("chat-json", tests, NULL, NULL);
}
