/* chat-jwt: HS256 tokens, algorithm pinned, expiry required. Tokens that the
 * library would never sign are built here by hand. */
#include "chat-test.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "chat-jwt.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define NOW INT64_C(1700000000)

static const unsigned char key[] = "test-key-0123456789abcdef0123456";
#define KEY_LEN (sizeof(key) - 1)

/* Builds base64url(header).base64url(payload).signature into out, where the
 * signature is HMAC-SHA256 with k over the first two parts (or empty when k
 * is NULL). Returns the token's length. */
static size_t make_token(const char *header, const char *payload, const unsigned char *k,
                         size_t k_len, char *out, size_t size)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    sodium_bin2base64(out, size, (const unsigned char *)header, strlen(header), B64);
    size_t n = strlen(out);
    out[n++] = '.';
    sodium_bin2base64(out + n, size - n, (const unsigned char *)payload, strlen(payload), B64);
    n += strlen(out + n);
    if (k != NULL) {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, k, k_len);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)out, n);
        crypto_auth_hmacsha256_final(&st, mac);
    }
    out[n++] = '.';
    out[n] = '\0';
    if (k != NULL) {
        sodium_bin2base64(out + n, size - n, mac, sizeof(mac), B64);
        n += strlen(out + n);
    }
    return n;
}

static const char hs256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* Verifies a token signed with the test key over header and payload. */
static int verify_made(const char *header, const char *payload, chat_jwt_claims_t *claims,
                       chat_error_t *err)
{
    char tok[CHAT_JWT_MAX + 1];
    size_t n = make_token(header, payload, key, KEY_LEN, tok, sizeof(tok));
    return chat_jwt_verify(key, KEY_LEN, tok, n, NOW, claims, err);
}

static void test_sign_verify_round_trip(void **state)
{
    (void)state;
    char tok[512];
    chat_jwt_claims_t claims;
    chat_error_t err;
    int n = chat_jwt_sign(key, KEY_LEN, "alice", NOW - 10, NOW + 3600, tok, sizeof(tok));
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(tok));
    assert_chat_ok(chat_jwt_verify(key, KEY_LEN, tok, (size_t)n, NOW, &claims, &err));
    assert_string_equal(claims.sub, "alice");
    assert_int_equal(claims.exp, NOW + 3600);
    assert_int_equal(claims.iat, NOW - 10);
}

static void test_signed_token_is_three_base64url_parts(void **state)
{
    (void)state;
    char tok[512];
    int n = chat_jwt_sign(key, KEY_LEN, "bob", NOW, NOW + 60, tok, sizeof(tok));
    assert_true(n > 0);
    int dots = 0;
    for (int i = 0; i < n; i++) {
        if (tok[i] == '.')
            dots++;
        else if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                        tok[i]) == NULL)
            fail_msg("'%c' is not base64url", tok[i]);
    }
    assert_int_equal(dots, 2);
}

static void test_verify_accepts_null_claims(void **state)
{
    (void)state;
    char tok[512];
    int n = chat_jwt_sign(key, KEY_LEN, "alice", NOW, NOW + 60, tok, sizeof(tok));
    assert_chat_ok(chat_jwt_verify(key, KEY_LEN, tok, (size_t)n, NOW, NULL, NULL));
}

static void test_sign_rejects_bad_sub(void **state)
{
    (void)state;
    char tok[512];
    assert_chat_err(chat_jwt_sign(key, KEY_LEN, "", NOW, NOW + 60, tok, sizeof(tok)), CHAT_EINVAL);
    assert_chat_err(chat_jwt_sign(key, KEY_LEN, "a\"b", NOW, NOW + 60, tok, sizeof(tok)),
                    CHAT_EINVAL);
}

static void test_sign_into_small_buffer_is_too_big(void **state)
{
    (void)state;
    char tok[40];
    assert_chat_err(chat_jwt_sign(key, KEY_LEN, "alice", NOW, NOW + 60, tok, sizeof(tok)),
                    CHAT_ETOOBIG);
}

static void test_expired_token(void **state)
{
    (void)state;
    char tok[512];
    chat_error_t err;
    int n = chat_jwt_sign(key, KEY_LEN, "alice", NOW - 100, NOW - 1, tok, sizeof(tok));
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, (size_t)n, NOW, NULL, &err), CHAT_EEXPIRED);
    assert_int_equal(err.code, CHAT_EEXPIRED);
}

static void test_token_expiring_now_is_expired(void **state)
{
    (void)state;
    char tok[512];
    chat_error_t err;
    int n = chat_jwt_sign(key, KEY_LEN, "alice", NOW - 100, NOW, tok, sizeof(tok));
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, (size_t)n, NOW, NULL, &err), CHAT_EEXPIRED);
}

static void test_wrong_key_is_auth_error(void **state)
{
    (void)state;
    static const unsigned char other[] = "another-key-0123456789abcdef0123";
    char tok[512];
    chat_error_t err;
    int n = chat_jwt_sign(other, sizeof(other) - 1, "alice", NOW, NOW + 60, tok, sizeof(tok));
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, (size_t)n, NOW, NULL, &err), CHAT_EAUTH);
}

static void test_tampered_payload_is_auth_error(void **state)
{
    (void)state;
    char tok[512], forged[512], claims_b64[256];
    chat_error_t err;
    int n = chat_jwt_sign(key, KEY_LEN, "alice", NOW, NOW + 60, tok, sizeof(tok));
    assert_true(n > 0);
    /* Keep alice's header and signature, swap in a payload naming mallory. */
    const char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    const char payload[] = "{\"sub\":\"mallory\",\"iat\":1700000000,\"exp\":1700000060}";
    sodium_bin2base64(claims_b64, sizeof(claims_b64), (const unsigned char *)payload,
                      sizeof(payload) - 1, B64);
    int m = snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(dot1 - tok), tok, claims_b64, dot2);
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, forged, (size_t)m, NOW, NULL, &err), CHAT_EAUTH);
}

static void test_tampered_signature_is_auth_error(void **state)
{
    (void)state;
    char tok[512];
    chat_error_t err;
    int n = chat_jwt_sign(key, KEY_LEN, "alice", NOW, NOW + 60, tok, sizeof(tok));
    char *sig = strrchr(tok, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, (size_t)n, NOW, NULL, &err), CHAT_EAUTH);
}

static void test_truncated_signature_is_auth_error(void **state)
{
    (void)state;
    char tok[512];
    chat_error_t err;
    int n = chat_jwt_sign(key, KEY_LEN, "alice", NOW, NOW + 60, tok, sizeof(tok));
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, (size_t)n - 4, NOW, NULL, &err), CHAT_EAUTH);
    const char *dot2 = strrchr(tok, '.');
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, (size_t)(dot2 + 1 - tok), NOW, NULL, &err),
                    CHAT_EAUTH);
}

static void test_alg_none_is_auth_error(void **state)
{
    (void)state;
    char tok[512];
    chat_error_t err;
    const char payload[] = "{\"sub\":\"alice\",\"exp\":1700000060}";
    size_t n = make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, NULL, 0, tok, sizeof(tok));
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, n, NOW, NULL, &err), CHAT_EAUTH);
    assert_non_null(strstr(err.message, "HS256"));
}

static void test_alg_none_with_valid_mac_is_auth_error(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(
        verify_made("{\"alg\":\"none\"}", "{\"sub\":\"alice\",\"exp\":1700000060}", NULL, &err),
        CHAT_EAUTH);
}

static void test_alg_hs512_is_auth_error(void **state)
{
    (void)state;
    chat_error_t err;
    /* Signed correctly with the right key: only the header's alg is wrong. */
    assert_chat_err(verify_made("{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
                                "{\"sub\":\"alice\",\"exp\":1700000060}", NULL, &err),
                    CHAT_EAUTH);
}

static void test_alg_case_and_absence_are_auth_errors(void **state)
{
    (void)state;
    chat_error_t err;
    const char payload[] = "{\"sub\":\"alice\",\"exp\":1700000060}";
    assert_chat_err(verify_made("{\"alg\":\"hs256\"}", payload, NULL, &err), CHAT_EAUTH);
    assert_chat_err(verify_made("{\"typ\":\"JWT\"}", payload, NULL, &err), CHAT_EAUTH);
    assert_chat_err(verify_made("{\"alg\":256}", payload, NULL, &err), CHAT_EAUTH);
    assert_chat_err(verify_made("not json", payload, NULL, &err), CHAT_EAUTH);
}

static void test_hand_made_hs256_token_verifies(void **state)
{
    (void)state;
    chat_jwt_claims_t claims;
    chat_error_t err;
    assert_chat_ok(
        verify_made(hs256, "{\"sub\":\"carol\",\"exp\":1700000060,\"x\":[1]}", &claims, &err));
    assert_string_equal(claims.sub, "carol");
    assert_int_equal(claims.iat, 0);
}

static void test_missing_exp_is_auth_error(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(verify_made(hs256, "{\"sub\":\"alice\",\"iat\":1700000000}", NULL, &err),
                    CHAT_EAUTH);
    assert_non_null(strstr(err.message, "exp"));
}

static void test_non_integer_exp_is_auth_error(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(verify_made(hs256, "{\"sub\":\"alice\",\"exp\":\"1700000060\"}", NULL, &err),
                    CHAT_EAUTH);
    assert_chat_err(verify_made(hs256, "{\"sub\":\"alice\",\"exp\":1.7e10}", NULL, &err),
                    CHAT_EAUTH);
}

static void test_missing_sub_is_auth_error(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(verify_made(hs256, "{\"exp\":1700000060}", NULL, &err), CHAT_EAUTH);
    assert_non_null(strstr(err.message, "sub"));
}

static void test_invalid_sub_is_auth_error(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(verify_made(hs256, "{\"sub\":\"a b\",\"exp\":1700000060}", NULL, &err),
                    CHAT_EAUTH);
    assert_chat_err(verify_made(hs256, "{\"sub\":\"\",\"exp\":1700000060}", NULL, &err),
                    CHAT_EAUTH);
    assert_chat_err(verify_made(hs256, "{\"sub\":42,\"exp\":1700000060}", NULL, &err), CHAT_EAUTH);
}

static void test_nbf_in_future_is_auth_error(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(
        verify_made(hs256, "{\"sub\":\"alice\",\"exp\":1700000060,\"nbf\":1700000001}", NULL, &err),
        CHAT_EAUTH);
    assert_non_null(strstr(err.message, "not yet valid"));
}

static void test_nbf_in_past_is_accepted(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_ok(verify_made(hs256, "{\"sub\":\"alice\",\"exp\":1700000060,\"nbf\":1700000000}",
                               NULL, &err));
}

static void test_signed_payload_not_json_is_parse_error(void **state)
{
    (void)state;
    chat_error_t err;
    assert_chat_err(verify_made(hs256, "[\"sub\",\"alice\"]", NULL, &err), CHAT_EPARSE);
    assert_chat_err(verify_made(hs256, "{\"sub\":", NULL, &err), CHAT_EPARSE);
}

static void test_not_three_parts_is_parse_error(void **state)
{
    (void)state;
    chat_error_t err;
    static const char *const bad[] = {"", "abc", "a.b", "a.b.c.d", "...", "a..b.c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = chat_jwt_verify(key, KEY_LEN, bad[i], strlen(bad[i]), NOW, NULL, &err);
        if (rc != CHAT_EPARSE)
            fail_msg("'%s' gave %s, expected EPARSE", bad[i], chat_err_name(rc));
    }
}

static void test_header_not_base64url_is_parse_error(void **state)
{
    (void)state;
    chat_error_t err;
    const char tok[] = "e30+.e30.e30";
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, sizeof(tok) - 1, NOW, NULL, &err),
                    CHAT_EPARSE);
}

static void test_too_long_is_too_big(void **state)
{
    (void)state;
    static char tok[CHAT_JWT_MAX + 2];
    chat_error_t err;
    memset(tok, 'a', sizeof(tok) - 1);
    tok[10] = '.';
    tok[20] = '.';
    assert_chat_err(chat_jwt_verify(key, KEY_LEN, tok, CHAT_JWT_MAX + 1, NOW, NULL, &err),
                    CHAT_ETOOBIG);
    assert_int_equal(err.code, CHAT_ETOOBIG);
}

static void test_verify_reads_only_len_bytes(void **state)
{
    (void)state;
    char tok[512];
    chat_error_t err;
    int n = chat_jwt_sign(key, KEY_LEN, "alice", NOW, NOW + 60, tok, sizeof(tok));
    /* A token inside a larger frame: what follows it is not part of it. */
    strcat(tok, ".trailing");
    assert_chat_ok(chat_jwt_verify(key, KEY_LEN, tok, (size_t)n, NOW, NULL, &err));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify_round_trip),
        cmocka_unit_test(test_signed_token_is_three_base64url_parts),
        cmocka_unit_test(test_verify_accepts_null_claims),
        cmocka_unit_test(test_sign_rejects_bad_sub),
        cmocka_unit_test(test_sign_into_small_buffer_is_too_big),
        cmocka_unit_test(test_expired_token),
        cmocka_unit_test(test_token_expiring_now_is_expired),
        cmocka_unit_test(test_wrong_key_is_auth_error),
        cmocka_unit_test(test_tampered_payload_is_auth_error),
        cmocka_unit_test(test_tampered_signature_is_auth_error),
        cmocka_unit_test(test_truncated_signature_is_auth_error),
        cmocka_unit_test(test_alg_none_is_auth_error),
        cmocka_unit_test(test_alg_none_with_valid_mac_is_auth_error),
        cmocka_unit_test(test_alg_hs512_is_auth_error),
        cmocka_unit_test(test_alg_case_and_absence_are_auth_errors),
        cmocka_unit_test(test_hand_made_hs256_token_verifies),
        cmocka_unit_test(test_missing_exp_is_auth_error),
        cmocka_unit_test(test_non_integer_exp_is_auth_error),
        cmocka_unit_test(test_missing_sub_is_auth_error),
        cmocka_unit_test(test_invalid_sub_is_auth_error),
        cmocka_unit_test(test_nbf_in_future_is_auth_error),
        cmocka_unit_test(test_nbf_in_past_is_accepted),
        cmocka_unit_test(test_signed_payload_not_json_is_parse_error),
        cmocka_unit_test(test_not_three_parts_is_parse_error),
        cmocka_unit_test(test_header_not_base64url_is_parse_error),
        cmocka_unit_test(test_too_long_is_too_big),
        cmocka_unit_test(test_verify_reads_only_len_bytes),
    };
    return cmocka_run_group_tests_name("chat-jwt", tests, NULL, NULL);
}
