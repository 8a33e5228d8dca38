/* cs-state: the consumer's cache, and in particular the list of
 * conversations whose stored last_seq lags the cache (cs-pipeline.h,
 * "last_seq"): who is on it, in what order, what a flush picks, and that
 * dropping entries takes them off it. */
#include "chat-test.h"

#include <string.h>

#include "cs-state.h"

static cs_conv_t *put(cs_state_t *s, const char *id, int32_t partition, int64_t last_seq)
{
    const char *members[] = {"bob", "alice", "bob"};
    cs_conv_t *c = NULL;
    assert_chat_ok(cs_state_conv_put(s, id, partition, 0, NULL, 0, members, 3, last_seq, &c));
    assert_non_null(c);
    return c;
}

static size_t dirty(cs_state_t *s, uint64_t before, const int32_t *parts, size_t np,
                    cs_conv_t **out, size_t max)
{
    return cs_state_dirty(s, before, parts, np, out, max);
}

static void test_members_sorted_once(void **unused)
{
    (void)unused;
    cs_state_t *s = cs_state_new();
    cs_conv_t *c = put(s, "c1", 0, 7);
    assert_int_equal(c->n_members, 2);
    assert_string_equal(c->members[0], "alice");
    assert_true(cs_conv_has_member(c, "bob"));
    assert_false(cs_conv_has_member(c, "carol"));
    assert_chat_ok(cs_conv_add_member(c, "carol"));
    assert_true(cs_conv_has_member(c, "carol"));
    cs_conv_remove_member(c, "alice");
    assert_false(cs_conv_has_member(c, "alice"));
    assert_int_equal(c->last_seq, 7);
    assert_int_equal(c->stored_seq, 7);
    cs_state_destroy(s);
}

static void test_touch_lists_only_what_lags(void **unused)
{
    (void)unused;
    cs_state_t *s = cs_state_new();
    cs_conv_t *a = put(s, "a", 0, 5), *out[8];
    cs_state_conv_touch(s, a, 100); /* last_seq == stored_seq: nothing to write */
    assert_int_equal(cs_state_dirty_count(s), 0);
    a->last_seq++;
    cs_state_conv_touch(s, a, 100);
    a->last_seq++;
    cs_state_conv_touch(s, a, 200); /* listed already: keeps its first time */
    assert_int_equal(cs_state_dirty_count(s), 1);
    assert_int_equal(dirty(s, 99, NULL, 0, out, 8), 0);
    assert_int_equal(dirty(s, 100, NULL, 0, out, 8), 1);
    assert_ptr_equal(out[0], a);
    /* A write of an older value leaves it listed; of its last_seq, not. */
    cs_state_conv_stored(s, a, 6);
    assert_int_equal(a->stored_seq, 6);
    assert_int_equal(cs_state_dirty_count(s), 1);
    cs_state_conv_stored(s, a, 7);
    assert_int_equal(cs_state_dirty_count(s), 0);
    assert_int_equal(dirty(s, UINT64_MAX, NULL, 0, out, 8), 0);
    /* stored_seq never goes back. */
    cs_state_conv_stored(s, a, 3);
    assert_int_equal(a->stored_seq, 7);
    cs_state_destroy(s);
}

static void test_oldest_first_bounded_by_time_count_and_partition(void **unused)
{
    (void)unused;
    cs_state_t *s = cs_state_new();
    cs_conv_t *c[5], *out[8];
    char id[8];
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        c[i] = put(s, id, i % 2, 0);
        c[i]->last_seq = 1;
        cs_state_conv_touch(s, c[i], (uint64_t)(10 * (i + 1)));
    }
    assert_int_equal(cs_state_dirty_count(s), 5);
    /* Dirty since 30 or earlier: c0, c1, c2, in that order. */
    assert_int_equal(dirty(s, 30, NULL, 0, out, 8), 3);
    assert_ptr_equal(out[0], c[0]);
    assert_ptr_equal(out[1], c[1]);
    assert_ptr_equal(out[2], c[2]);
    /* At most max. */
    assert_int_equal(dirty(s, UINT64_MAX, NULL, 0, out, 2), 2);
    assert_ptr_equal(out[1], c[1]);
    /* Of partition 1 only: c1, c3. */
    int32_t one = 1;
    assert_int_equal(dirty(s, UINT64_MAX, &one, 1, out, 8), 2);
    assert_ptr_equal(out[0], c[1]);
    assert_ptr_equal(out[1], c[3]);
    /* Written from the middle: the order of the rest holds, and it comes
     * back at the end when it lags again. */
    cs_state_conv_stored(s, c[2], 1);
    c[2]->last_seq = 2;
    cs_state_conv_touch(s, c[2], 60);
    assert_int_equal(dirty(s, UINT64_MAX, NULL, 0, out, 8), 5);
    assert_ptr_equal(out[2], c[3]);
    assert_ptr_equal(out[4], c[2]);
    cs_state_destroy(s);
}

static void test_dropping_takes_them_off(void **unused)
{
    (void)unused;
    cs_state_t *s = cs_state_new();
    cs_conv_t *out[8];
    char id[8];
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        cs_conv_t *c = put(s, id, i % 2, 0);
        c->last_seq = 1;
        cs_state_conv_touch(s, c, 1);
    }
    int32_t zero = 0;
    cs_state_clear_partitions(s, &zero, 1);
    assert_int_equal(cs_state_dirty_count(s), 2);
    assert_int_equal(dirty(s, UINT64_MAX, NULL, 0, out, 8), 2);
    assert_string_equal(out[0]->id, "c1");
    assert_string_equal(out[1]->id, "c3");
    /* Replacing an entry drops the old one's place too (a reload reads the
     * store's last_seq again). */
    cs_conv_t *fresh = put(s, "c1", 1, 0);
    assert_int_equal(cs_state_dirty_count(s), 1);
    assert_int_equal(dirty(s, UINT64_MAX, NULL, 0, out, 8), 1);
    assert_string_equal(out[0]->id, "c3");
    assert_false(fresh->dirty);
    cs_state_clear(s);
    assert_int_equal(cs_state_dirty_count(s), 0);
    assert_int_equal(cs_state_size(s), 0);
    cs_state_destroy(s); /* ASan: nothing left behind */
}

/* A failed attempt drops only its conversations (and their members'
 * watermarks): the others keep their place on the lagging list. */
static void test_drop_convs_keeps_the_others(void **unused)
{
    (void)unused;
    cs_state_t *s = cs_state_new();
    cs_conv_t *a = put(s, "a", 0, 0), *b = put(s, "b", 0, 0), *out[4];
    put(s, "ab", 0, 0);
    a->last_seq = b->last_seq = 1;
    cs_state_conv_touch(s, a, 1);
    cs_state_conv_touch(s, b, 2);
    cs_mark_t *m;
    const char *keys[] = {"a/u1", "a/u2", "b/u1", "ab/u1"};
    for (size_t i = 0; i < 4; i++)
        assert_chat_ok(cs_state_mark_put(s, keys[i], 0, 1, 1, &m));
    assert_int_equal(cs_state_size(s), 7);
    const char *drop[] = {"a", "zz"};
    assert_chat_ok(cs_state_drop_convs(s, drop, 2));
    assert_null(cs_state_conv_get(s, "a"));
    assert_non_null(cs_state_conv_get(s, "b"));
    assert_non_null(cs_state_conv_get(s, "ab"));
    assert_null(cs_state_mark_get(s, "a/u1"));
    assert_null(cs_state_mark_get(s, "a/u2"));
    assert_non_null(cs_state_mark_get(s, "b/u1"));
    assert_non_null(cs_state_mark_get(s, "ab/u1"));
    assert_int_equal(cs_state_size(s), 4);
    assert_int_equal(cs_state_dirty(s, UINT64_MAX, NULL, 0, out, 4), 1);
    assert_ptr_equal(out[0], b);
    cs_state_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members_sorted_once),
        cmocka_unit_test(test_touch_lists_only_what_lags),
        cmocka_unit_test(test_oldest_first_bounded_by_time_count_and_partition),
        cmocka_unit_test(test_dropping_takes_them_off),
        cmocka_unit_test(test_drop_convs_keeps_the_others),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
