/* chat-id: event ids (time-ordered or derived from a client id) and the
 * syntax shared by user, conversation, device and client ids. */
#include "chat-test.h"

#include <string.h>

#include "chat-id.h"

/* Crockford's base32 alphabet: no I, L, O or U. */
static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static void assert_id_well_formed(const char *id)
{
    assert_int_equal(strlen(id), CHAT_ID_LEN);
    for (size_t i = 0; i < CHAT_ID_LEN; i++) {
        if (strchr(alphabet, id[i]) == NULL)
            fail_msg("id %s has '%c' at %zu, outside Crockford base32", id, id[i], i);
    }
}

static void test_new_id_is_26_chars_of_crockford_base32(void **state)
{
    (void)state;
    char id[CHAT_ID_LEN + 1];
    for (int i = 0; i < 100; i++) {
        chat_id_new(id, chat_now_ms());
        assert_id_well_formed(id);
    }
}

static void test_new_id_encodes_time_in_first_ten_chars(void **state)
{
    (void)state;
    char id[CHAT_ID_LEN + 1];
    chat_id_new(id, 0);
    assert_memory_equal(id, "0000000000", 10);
    /* The largest 48-bit time: 2 zero bits then 48 one bits. */
    chat_id_new(id, (UINT64_C(1) << 48) - 1);
    assert_memory_equal(id, "7ZZZZZZZZZ", 10);
    chat_id_new(id, 1);
    assert_memory_equal(id, "0000000001", 10);
    chat_id_new(id, 32);
    assert_memory_equal(id, "0000000010", 10);
}

static void test_new_ids_sort_by_time(void **state)
{
    (void)state;
    char prev[CHAT_ID_LEN + 1], id[CHAT_ID_LEN + 1];
    const uint64_t t0 = UINT64_C(1700000000000);
    static const uint64_t steps[] = {1, 1, 2, 31, 32, 1000, 86400000};
    uint64_t t = t0;
    chat_id_new(prev, t);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        t += steps[i];
        chat_id_new(id, t);
        if (strcmp(prev, id) >= 0)
            fail_msg("id %s at %llu does not sort after %s", id, (unsigned long long)t, prev);
        memcpy(prev, id, sizeof(id));
    }
}

static void test_new_ids_in_same_ms_share_time_and_differ(void **state)
{
    (void)state;
    char a[CHAT_ID_LEN + 1], b[CHAT_ID_LEN + 1];
    chat_id_new(a, UINT64_C(1700000000123));
    chat_id_new(b, UINT64_C(1700000000123));
    assert_memory_equal(a, b, 10);
    assert_string_not_equal(a, b);
}

static void test_client_id_is_well_formed(void **state)
{
    (void)state;
    char id[CHAT_ID_LEN + 1];
    chat_id_for_client(id, "alice", "d.alice.bob", "m-17");
    assert_id_well_formed(id);
}

static void test_client_id_is_deterministic(void **state)
{
    (void)state;
    char a[CHAT_ID_LEN + 1], b[CHAT_ID_LEN + 1];
    chat_id_for_client(a, "alice", "d.alice.bob", "m-17");
    chat_id_for_client(b, "alice", "d.alice.bob", "m-17");
    assert_string_equal(a, b);
}

static void test_client_id_differs_per_input(void **state)
{
    (void)state;
    char base[CHAT_ID_LEN + 1], id[CHAT_ID_LEN + 1];
    chat_id_for_client(base, "alice", "d.alice.bob", "m-17");
    chat_id_for_client(id, "bob", "d.alice.bob", "m-17");
    assert_string_not_equal(base, id);
    chat_id_for_client(id, "alice", "g.01J", "m-17");
    assert_string_not_equal(base, id);
    chat_id_for_client(id, "alice", "d.alice.bob", "m-18");
    assert_string_not_equal(base, id);
}

static void test_client_id_separates_fields(void **state)
{
    (void)state;
    /* The fields are hashed with separators: moving a character from one
     * field to the next must not give the same id. */
    char a[CHAT_ID_LEN + 1], b[CHAT_ID_LEN + 1];
    chat_id_for_client(a, "ab", "c", "d");
    chat_id_for_client(b, "a", "bc", "d");
    assert_string_not_equal(a, b);
    chat_id_for_client(b, "ab", "", "cd");
    assert_string_not_equal(a, b);
}

static void test_name_valid_accepts_allowed_characters(void **state)
{
    (void)state;
    static const char *const ok[] = {"a",      "Z",      "0",      "alice", "d.alice.bob",
                                     "g.01J5", "user_1", "c-1f3a", "ns:id", "A-Z.a_z:0-9"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (!chat_name_valid(ok[i], strlen(ok[i])))
            fail_msg("'%s' should be valid", ok[i]);
    }
}

static void test_name_valid_length_bounds(void **state)
{
    (void)state;
    char s[CHAT_NAME_MAX + 2];
    memset(s, 'a', sizeof(s));
    assert_true(chat_name_valid(s, 1));
    assert_true(chat_name_valid(s, 64));
    assert_false(chat_name_valid(s, 65));
    assert_false(chat_name_valid(s, 0));
    assert_false(chat_name_valid("", 0));
    assert_false(chat_name_valid(NULL, 0));
    assert_false(chat_name_valid(NULL, 5));
}

static void test_name_valid_rejects_bad_characters(void **state)
{
    (void)state;
    static const char *const bad[] = {"a b",  "a/b",         "a@b", "a\"b", "a\\b", "a\nb", "a|b",
                                      "a\tb", "caf\xc3\xa9", "a,b", "a*b",  "a#b",  "{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (chat_name_valid(bad[i], strlen(bad[i])))
            fail_msg("'%s' should be invalid", bad[i]);
    }
}

static void test_name_valid_rejects_embedded_nul(void **state)
{
    (void)state;
    assert_false(chat_name_valid("ab\0cd", 5));
    assert_true(chat_name_valid("ab\0cd", 2));
}

static void test_now_ms_is_wall_clock_ms(void **state)
{
    (void)state;
    /* After 2020-01-01 and before 2200: milliseconds, not seconds or us. */
    uint64_t now = chat_now_ms();
    assert_true(now > UINT64_C(1577836800000));
    assert_true(now < UINT64_C(7258118400000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_id_is_26_chars_of_crockford_base32),
        cmocka_unit_test(test_new_id_encodes_time_in_first_ten_chars),
        cmocka_unit_test(test_new_ids_sort_by_time),
        cmocka_unit_test(test_new_ids_in_same_ms_share_time_and_differ),
        cmocka_unit_test(test_client_id_is_well_formed),
        cmocka_unit_test(test_client_id_is_deterministic),
        cmocka_unit_test(test_client_id_differs_per_input),
        cmocka_unit_test(test_client_id_separates_fields),
        cmocka_unit_test(test_name_valid_accepts_allowed_characters),
        cmocka_unit_test(test_name_valid_length_bounds),
        cmocka_unit_test(test_name_valid_rejects_bad_characters),
        cmocka_unit_test(test_name_valid_rejects_embedded_nul),
        cmocka_unit_test(test_now_ms_is_wall_clock_ms),
    };
    return cmocka_run_group_tests_name("chat-id", tests, NULL, NULL);
}
