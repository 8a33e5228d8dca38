/* chat-log: level names, and the macro that tests the level before it
 * evaluates its arguments. */
#include "chat-test.h"

#include "chat-log.h"

static int evaluated;

static int count_evaluation(void)
{
    return ++evaluated;
}

static int restore_level(void **state)
{
    (void)state;
    chat_log_init("test-chat-log", CHAT_LOG_INFO);
    return 0;
}

static void test_level_names_parse(void **state)
{
    (void)state;
    assert_int_equal(chat_log_level_parse("error"), CHAT_LOG_ERROR);
    assert_int_equal(chat_log_level_parse("warn"), CHAT_LOG_WARN);
    assert_int_equal(chat_log_level_parse("info"), CHAT_LOG_INFO);
    assert_int_equal(chat_log_level_parse("debug"), CHAT_LOG_DEBUG);
}

static void test_unknown_level_is_minus_one(void **state)
{
    (void)state;
    assert_int_equal(chat_log_level_parse("verbose"), -1);
    assert_int_equal(chat_log_level_parse("INFO"), -1);
    assert_int_equal(chat_log_level_parse(""), -1);
}

static void test_init_sets_level(void **state)
{
    (void)state;
    chat_log_init("test-chat-log", CHAT_LOG_DEBUG);
    assert_int_equal(chat_log_level, CHAT_LOG_DEBUG);
}

static void test_disabled_level_does_not_evaluate_arguments(void **state)
{
    (void)state;
    chat_log_init("test-chat-log", CHAT_LOG_WARN);
    evaluated = 0;
    CHAT_DEBUG("never printed %d", count_evaluation());
    CHAT_INFO("never printed %d", count_evaluation());
    assert_int_equal(evaluated, 0);
}

static void test_enabled_level_evaluates_arguments_once(void **state)
{
    (void)state;
    /* Logs go to stderr, outside the TAP stream on stdout. */
    chat_log_init("test-chat-log", CHAT_LOG_WARN);
    evaluated = 0;
    CHAT_WARN("test line %d (expected in the log)", count_evaluation());
    assert_int_equal(evaluated, 1);
}

#define LOG_TEST(f) cmocka_unit_test_teardown(f, restore_level)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_names_parse),
        cmocka_unit_test(test_unknown_level_is_minus_one),
        LOG_TEST(test_init_sets_level),
        LOG_TEST(test_disabled_level_does_not_evaluate_arguments),
        LOG_TEST(test_enabled_level_evaluates_arguments_once),
    };
    return cmocka_run_group_tests_name("chat-log", tests, NULL, NULL);
}
