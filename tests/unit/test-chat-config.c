/* chat-config: defaults, then CHAT_<NAME> from the environment, then the
 * command line; typed values checked against the table. */
#include "chat-test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat-config.h"

typedef struct test_cfg_s {
    int64_t listen_port;
    const char *listen_host;
    int verbose;
    int64_t max_conns;
} test_cfg_t;

static const chat_conf_entry_t table[] = {
    CHAT_CONF_INT_ENTRY(test_cfg_t, listen_port, "8080", 1, 65535, "TCP port to listen on"),
    CHAT_CONF_STR_ENTRY(test_cfg_t, listen_host, "0.0.0.0", "address to listen on"),
    CHAT_CONF_BOOL_ENTRY(test_cfg_t, verbose, "false", "log more"),
    CHAT_CONF_INT_ENTRY(test_cfg_t, max_conns, "100", 1, 1000000, "connection limit"),
};
#define N_ENTRIES (sizeof(table) / sizeof(table[0]))

static const char *const env_names[] = {"CHAT_LISTEN_PORT", "CHAT_LISTEN_HOST", "CHAT_VERBOSE",
                                        "CHAT_MAX_CONNS"};

/* Every test starts and ends with none of the table's variables set. */
static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        unsetenv(env_names[i]);
    return 0;
}

/* Loads the table from argv (a NULL-terminated list after the program). */
static int load(test_cfg_t *cfg, chat_error_t *err, char **argv)
{
    int argc = 0;
    while (argv[argc] != NULL)
        argc++;
    memset(cfg, 0, sizeof(*cfg));
    return chat_config_load(table, N_ENTRIES, cfg, argc, argv, err);
}

#define ARGV(...)                                                                                  \
    (char *[])                                                                                     \
    {                                                                                              \
        "prog", __VA_ARGS__, NULL                                                                  \
    }

static void test_defaults(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    char *argv[] = {"prog", NULL};
    assert_chat_ok(load(&cfg, &err, argv));
    assert_int_equal(cfg.listen_port, 8080);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.verbose, 0);
    assert_int_equal(cfg.max_conns, 100);
}

static void test_env_overrides_default(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    setenv("CHAT_LISTEN_PORT", "9000", 1);
    setenv("CHAT_LISTEN_HOST", "127.0.0.1", 1);
    setenv("CHAT_VERBOSE", "yes", 1);
    char *argv[] = {"prog", NULL};
    assert_chat_ok(load(&cfg, &err, argv));
    assert_int_equal(cfg.listen_port, 9000);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.verbose, 1);
    assert_int_equal(cfg.max_conns, 100);
}

static void test_argv_overrides_env(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    setenv("CHAT_LISTEN_PORT", "9000", 1);
    assert_chat_ok(load(&cfg, &err, ARGV("--listen_port=9001")));
    assert_int_equal(cfg.listen_port, 9001);
}

static void test_bad_env_value_names_the_variable(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    setenv("CHAT_MAX_CONNS", "lots", 1);
    char *argv[] = {"prog", NULL};
    assert_chat_err(load(&cfg, &err, argv), CHAT_EINVAL);
    assert_int_equal(err.code, CHAT_EINVAL);
    assert_non_null(strstr(err.message, "CHAT_MAX_CONNS"));
}

static void test_name_equals_value(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_ok(load(&cfg, &err, ARGV("--listen_port=1234", "--listen_host=::1")));
    assert_int_equal(cfg.listen_port, 1234);
    assert_string_equal(cfg.listen_host, "::1");
}

static void test_name_space_value(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_ok(load(&cfg, &err, ARGV("--listen_port", "1234", "--max_conns", "7")));
    assert_int_equal(cfg.listen_port, 1234);
    assert_int_equal(cfg.max_conns, 7);
}

static void test_dashes_match_underscores(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_ok(load(&cfg, &err, ARGV("--listen-port=4321", "--max-conns", "9")));
    assert_int_equal(cfg.listen_port, 4321);
    assert_int_equal(cfg.max_conns, 9);
}

static void test_string_value_is_not_copied(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    char host[] = "--listen_host=10.0.0.1";
    char *argv[] = {"prog", host, NULL};
    assert_chat_ok(load(&cfg, &err, argv));
    assert_ptr_equal(cfg.listen_host, host + strlen("--listen_host="));
}

static void test_empty_string_value(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_ok(load(&cfg, &err, ARGV("--listen_host=")));
    assert_string_equal(cfg.listen_host, "");
}

static void test_bool_true_forms(void **state)
{
    (void)state;
    static const char *const yes[] = {"1", "true", "yes", "on", "TRUE", "Yes", "On"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        test_cfg_t cfg = {0};
        chat_error_t err;
        assert_chat_ok(chat_config_set(table, N_ENTRIES, &cfg, "verbose", yes[i], &err));
        assert_int_equal(cfg.verbose, 1);
    }
}

static void test_bool_false_forms(void **state)
{
    (void)state;
    static const char *const no[] = {"0", "false", "no", "off", "FALSE", "No", "OFF"};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        test_cfg_t cfg = {.verbose = 1};
        chat_error_t err;
        assert_chat_ok(chat_config_set(table, N_ENTRIES, &cfg, "verbose", no[i], &err));
        assert_int_equal(cfg.verbose, 0);
    }
}

static void test_bool_flag_alone_means_true(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_ok(load(&cfg, &err, ARGV("--verbose", "--listen_port=1")));
    assert_int_equal(cfg.verbose, 1);
    assert_int_equal(cfg.listen_port, 1);
}

static void test_bool_bad_value_is_invalid(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("--verbose=maybe")), CHAT_EINVAL);
    assert_non_null(strstr(err.message, "verbose"));
    assert_chat_err(load(&cfg, &err, ARGV("--verbose=")), CHAT_EINVAL);
}

static void test_range_bounds_accepted(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_ok(load(&cfg, &err, ARGV("--listen_port=1")));
    assert_int_equal(cfg.listen_port, 1);
    assert_chat_ok(load(&cfg, &err, ARGV("--listen_port=65535")));
    assert_int_equal(cfg.listen_port, 65535);
}

static void test_below_min_is_range_error(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("--listen_port=0")), CHAT_ERANGE);
    assert_int_equal(err.code, CHAT_ERANGE);
    assert_non_null(strstr(err.message, "listen_port"));
    assert_chat_err(load(&cfg, &err, ARGV("--listen_port=-5")), CHAT_ERANGE);
}

static void test_above_max_is_range_error(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("--listen_port=65536")), CHAT_ERANGE);
    assert_non_null(strstr(err.message, "65535"));
}

static void test_number_past_int64_is_range_error(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("--max_conns=99999999999999999999")), CHAT_ERANGE);
    assert_chat_err(load(&cfg, &err, ARGV("--max_conns=-99999999999999999999")), CHAT_ERANGE);
}

static void test_not_a_number_is_invalid(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("--listen_port=80x")), CHAT_EINVAL);
    assert_chat_err(load(&cfg, &err, ARGV("--listen_port=")), CHAT_EINVAL);
}

static void test_unknown_option_is_invalid(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("--listen_prot=80")), CHAT_EINVAL);
    assert_non_null(strstr(err.message, "listen_prot"));
}

static void test_option_prefix_is_unknown(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("--listen=80")), CHAT_EINVAL);
    assert_chat_err(load(&cfg, &err, ARGV("--listen_port_x=80")), CHAT_EINVAL);
}

static void test_missing_value_is_invalid(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("--listen_port")), CHAT_EINVAL);
    assert_non_null(strstr(err.message, "listen_port"));
}

static void test_positional_argument_is_invalid(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    assert_chat_err(load(&cfg, &err, ARGV("serve")), CHAT_EINVAL);
    assert_chat_err(load(&cfg, &err, ARGV("-v")), CHAT_EINVAL);
}

static void test_set_unknown_is_not_found(void **state)
{
    (void)state;
    test_cfg_t cfg = {0};
    chat_error_t err;
    assert_chat_err(chat_config_set(table, N_ENTRIES, &cfg, "nope", "1", &err), CHAT_ENOTFOUND);
    assert_non_null(strstr(err.message, "nope"));
}

/* Runs load() with stdout sent to a temporary file and returns what was
 * printed (malloc'ed), so that usage text never mixes with the TAP stream. */
static char *load_capturing_stdout(test_cfg_t *cfg, chat_error_t *err, char **argv, int *rc)
{
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
    *rc = load(cfg, err, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    assert_int_equal(fseek(tmp, 0, SEEK_END), 0);
    long size = ftell(tmp);
    assert_true(size >= 0);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    rewind(tmp);
    assert_int_equal(fread(text, 1, (size_t)size, tmp), (size_t)size);
    fclose(tmp);
    return text;
}

static void test_help_prints_table_and_returns_1(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    int rc;
    char *text = load_capturing_stdout(&cfg, &err, ARGV("--listen_port=1", "--help"), &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(text, "usage: prog"));
    assert_non_null(strstr(text, "--listen_port"));
    assert_non_null(strstr(text, "--max_conns"));
    assert_non_null(strstr(text, "CHAT_"));
    free(text);
}

static void test_short_help_returns_1(void **state)
{
    (void)state;
    test_cfg_t cfg;
    chat_error_t err;
    int rc;
    free(load_capturing_stdout(&cfg, &err, ARGV("-h"), &rc));
    assert_int_equal(rc, 1);
}

static void test_usage_lists_type_default_range_and_help(void **state)
{
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);
    chat_config_usage(table, N_ENTRIES, "gateway", out);
    fclose(out);
    assert_non_null(strstr(text, "usage: gateway"));
    assert_non_null(strstr(text, "default 8080, range [1, 65535]"));
    assert_non_null(strstr(text, "TCP port to listen on"));
    assert_non_null(strstr(text, "string"));
    assert_non_null(strstr(text, "bool"));
    free(text);
}

#define CONF_TEST(f) cmocka_unit_test_setup_teardown(f, clear_env, clear_env)

int main(void)
{
    const struct CMUnitTest tests[] = {
        CONF_TEST(test_defaults),
        CONF_TEST(test_env_overrides_default),
        CONF_TEST(test_argv_overrides_env),
        CONF_TEST(test_bad_env_value_names_the_variable),
        CONF_TEST(test_name_equals_value),
        CONF_TEST(test_name_space_value),
        CONF_TEST(test_dashes_match_underscores),
        CONF_TEST(test_string_value_is_not_copied),
        CONF_TEST(test_empty_string_value),
        CONF_TEST(test_bool_true_forms),
        CONF_TEST(test_bool_false_forms),
        CONF_TEST(test_bool_flag_alone_means_true),
        CONF_TEST(test_bool_bad_value_is_invalid),
        CONF_TEST(test_range_bounds_accepted),
        CONF_TEST(test_below_min_is_range_error),
        CONF_TEST(test_above_max_is_range_error),
        CONF_TEST(test_number_past_int64_is_range_error),
        CONF_TEST(test_not_a_number_is_invalid),
        CONF_TEST(test_unknown_option_is_invalid),
        CONF_TEST(test_option_prefix_is_unknown),
        CONF_TEST(test_missing_value_is_invalid),
        CONF_TEST(test_positional_argument_is_invalid),
        CONF_TEST(test_set_unknown_is_not_found),
        CONF_TEST(test_help_prints_table_and_returns_1),
        CONF_TEST(test_short_help_returns_1),
        CONF_TEST(test_usage_lists_type_default_range_and_help),
    };
    return cmocka_run_group_tests_name("chat-config", tests, NULL, NULL);
}
