#include "chat-config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Compares an option name with an entry name, treating '-' and '_' alike. */
static int name_eq(const char *opt, size_t len, const char *name)
{
    size_t i;
    for (i = 0; i < len; i++) {
        char a = opt[i] == '-' ? '_' : opt[i];
        if (name[i] == '\0' || a != name[i])
            return 0;
    }
    return name[i] == '\0';
}

static const chat_conf_entry_t *find(const chat_conf_entry_t *table, size_t n, const char *name,
                                     size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (name_eq(name, len, table[i].name))
            return &table[i];
    }
    return NULL;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return CHAT_EINVAL;
}

static int apply(const chat_conf_entry_t *e, void *cfg, const char *value, const char *source,
                 chat_error_t *err)
{
    char *p = (char *)cfg + e->offset;
    switch (e->type) {
    case CHAT_CONF_STR:
        *(const char **)p = value;
        return 0;
    case CHAT_CONF_BOOL: {
        int b;
        if (parse_bool(value, &b) != 0)
            return chat_error_set(err, CHAT_EINVAL, "%s (from %s): '%s' is not a boolean", e->name,
                                  source, value);
        *(int *)p = b;
        return 0;
    }
    case CHAT_CONF_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end != '\0')
            return chat_error_set(err, CHAT_EINVAL, "%s (from %s): '%s' is not an integer", e->name,
                                  source, value);
        /* A number past int64_t (strtoll's ERANGE) is out of range too. */
        if (errno == ERANGE || v < e->min || v > e->max)
            return chat_error_set(err, CHAT_ERANGE, "%s (from %s): %lld is outside [%lld, %lld]",
                                  e->name, source, v, (long long)e->min, (long long)e->max);
        *(int64_t *)p = v;
        return 0;
    }
    }
    return CHAT_EINVAL;
}

int chat_config_set(const chat_conf_entry_t *table, size_t n, void *cfg, const char *name,
                    const char *value, chat_error_t *err)
{
    const chat_conf_entry_t *e = find(table, n, name, strlen(name));
    if (e == NULL)
        return chat_error_set(err, CHAT_ENOTFOUND, "unknown option '%s'", name);
    return apply(e, cfg, value, "set", err);
}

int chat_config_load(const chat_conf_entry_t *table, size_t n, void *cfg, int argc, char **argv,
                     chat_error_t *err)
{
    int rc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = apply(&table[i], cfg, table[i].def, "default", err)) != 0)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        char env[128] = "CHAT_";
        size_t k = 5;
        for (const char *s = table[i].name; *s && k < sizeof(env) - 1; s++)
            env[k++] = (char)toupper((unsigned char)*s);
        env[k] = '\0';
        const char *v = getenv(env);
        if (v != NULL && (rc = apply(&table[i], cfg, v, env, err)) != 0)
            return rc;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            chat_config_usage(table, n, argv[0], stdout);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0)
            return chat_error_set(err, CHAT_EINVAL, "unexpected argument '%s'", arg);
        arg += 2;
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const chat_conf_entry_t *e = find(table, n, arg, len);
        if (e == NULL)
            return chat_error_set(err, CHAT_EINVAL, "unknown option '--%.*s' (see --help)",
                                  (int)len, arg);
        const char *value;
        if (eq != NULL)
            value = eq + 1;
        else if (e->type == CHAT_CONF_BOOL)
            value = "1";
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return chat_error_set(err, CHAT_EINVAL, "option '--%s' needs a value", e->name);
        if ((rc = apply(e, cfg, value, "command line", err)) != 0)
            return rc;
    }
    return 0;
}

void chat_config_usage(const chat_conf_entry_t *table, size_t n, const char *program, FILE *out)
{
    static const char *const types[] = {"int", "string", "bool"};
    fprintf(out, "usage: %s [--option=value ...]\n\n", program);
    fprintf(out, "Each option can also be set in the environment as CHAT_<OPTION>.\n\n");
    for (size_t i = 0; i < n; i++) {
        const chat_conf_entry_t *e = &table[i];
        fprintf(out, "  --%-26s %-6s default %s", e->name, types[e->type],
                e->def[0] ? e->def : "\"\"");
        if (e->type == CHAT_CONF_INT)
            fprintf(out, ", range [%lld, %lld]", (long long)e->min, (long long)e->max);
        fprintf(out, "\n      %s\n", e->help);
    }
}
