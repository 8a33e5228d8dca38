#include "lg-report.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char *const hist_names[LG_H_N] = {
    "connect_to_hello", "send_to_sent",    "send_to_receive",    "send_to_echo",
    "send_to_receipt",  "storm_to_synced", "storm_to_caught_up",
};

static const char *const hist_titles[LG_H_N] = {
    "connect -> hello", "send -> sent",    "send -> receive",        "send -> own echo",
    "send -> receipt",  "storm -> synced", "storm -> all missed in",
};

void lg_report_init(lg_report_t *r)
{
    memset(r, 0, sizeof(*r));
}

#define MAX_INTO(a, b) ((a) = (b) > (a) ? (b) : (a))

void lg_report_merge(lg_report_t *dst, const lg_report_t *src)
{
    uint64_t *d = (uint64_t *)&dst->c;
    const uint64_t *s = (const uint64_t *)&src->c;
    for (size_t i = 0; i < sizeof(dst->c) / sizeof(uint64_t); i++)
        d[i] += s[i];
    MAX_INTO(dst->t.setup_us, src->t.setup_us);
    MAX_INTO(dst->t.connect_us, src->t.connect_us);
    MAX_INTO(dst->t.prime_us, src->t.prime_us);
    MAX_INTO(dst->t.measure_us, src->t.measure_us);
    MAX_INTO(dst->t.drain_us, src->t.drain_us);
    MAX_INTO(dst->t.storm_us, src->t.storm_us);
    MAX_INTO(dst->t.storm_done_abs, src->t.storm_done_abs);
    dst->t.cpu_user_us += src->t.cpu_user_us;
    dst->t.cpu_sys_us += src->t.cpu_sys_us;
    dst->t.maxrss_kib += src->t.maxrss_kib;
    for (int i = 0; i < LG_H_N; i++)
        lg_hist_merge(&dst->h[i], &src->h[i]);
}

static void read_first_line_with(const char *path, const char *key, char *out, size_t size)
{
    char line[512];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) != 0)
            continue;
        char *v = strchr(line, ':');
        if (v == NULL)
            break;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\n")] = '\0';
        snprintf(out, size, "%s", v);
        break;
    }
    fclose(f);
}

void lg_machine_probe(lg_machine_t *m)
{
    struct utsname u;
    char mem[64] = "";
    time_t now = time(NULL);
    struct tm tm;

    memset(m, 0, sizeof(*m));
    m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
    read_first_line_with("/proc/meminfo", "MemTotal", mem, sizeof(mem));
    m->mem_bytes = (uint64_t)strtoull(mem, NULL, 10) * 1024;
    read_first_line_with("/proc/cpuinfo", "model name", m->cpu, sizeof(m->cpu));
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof(m->kernel), "%s %s %s", u.sysname, u.release, u.machine);
    if (gethostname(m->host, sizeof(m->host) - 1) != 0)
        snprintf(m->host, sizeof(m->host), "?");
    gmtime_r(&now, &tm);
    strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int lg_report_verdict(const lg_report_t *r, const lg_config_t *cfg)
{
    const lg_counts_t *c = &r->c;
    if (c->missing + c->missing_echo + c->duplicates + c->seq_mismatches > 0)
        return 1;
    /* Held connections that drop are what an idle run is there to catch;
     * a run where nothing was acknowledged proves nothing. */
    if (c->conns_failed + c->setup_failed + c->convs_excluded > 0 ||
        (cfg->storm && c->storm_incomplete > 0) || (cfg->idle && c->closes_unexpected > 0) ||
        (!cfg->idle && c->acked == 0))
        return 2;
    return 0;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static double per_s(uint64_t n, uint64_t us)
{
    return us > 0 ? (double)n * 1e6 / (double)us : 0.0;
}

static void print_hist(FILE *out, const lg_hist_t *h, const char *title)
{
    if (h->count == 0)
        return;
    fprintf(out, "  %-24s %10llu %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", title,
            (unsigned long long)h->count, ms(lg_hist_percentile(h, 0.50)),
            ms(lg_hist_percentile(h, 0.90)), ms(lg_hist_percentile(h, 0.99)),
            ms(lg_hist_percentile(h, 0.999)), ms(h->max), ms(h->sum / h->count));
}

void lg_report_print(const lg_report_t *r, const lg_config_t *cfg, const lg_plan_t *plan,
                     const lg_machine_t *m, FILE *out)
{
    const lg_counts_t *c = &r->c;
    const lg_times_t *t = &r->t;
    fprintf(out, "\n== chat-loadgen run %s: %s", plan->run_id, cfg->idle ? "idle" : cfg->mode);
    if (plan->groups)
        fprintf(out, " of %u", plan->group);
    fprintf(out, ", %llu connections, %u processes, %u gateways, %u source addresses\n",
            (unsigned long long)cfg->conns, plan->procs, plan->n_gw, plan->src_addrs);
    if (!cfg->idle) {
        if (cfg->rate > 0)
            fprintf(out, "   rate %lld/s", (long long)cfg->rate);
        else
            fprintf(out, "   rate: as fast as a window of %lld allows", (long long)cfg->window);
        fprintf(out, ", body %lld B, %llds measured after %llds warm-up%s%s\n",
                (long long)cfg->body_size, (long long)cfg->duration, (long long)cfg->warmup,
                cfg->receipts ? ", receipts" : "", cfg->storm ? ", storm" : "");
    } else {
        fprintf(out, "   held %llds after %llds warm-up\n", (long long)cfg->duration,
                (long long)cfg->warmup);
    }
    fprintf(out, "   machine: %s, %ld CPUs, %.1f GiB, %s; %s\n", m->host, m->nproc,
            (double)m->mem_bytes / (1024.0 * 1024 * 1024), m->kernel, m->date);

    fprintf(out,
            "\nconnections: %llu/%llu opened, %llu failed, %llu retries (%llu refused with "
            "429), setup %.1f s, connect %.1f s, prime %.1f s\n",
            (unsigned long long)c->conns_opened, (unsigned long long)c->conns_target,
            (unsigned long long)c->conns_failed, (unsigned long long)c->connect_retries,
            (unsigned long long)c->refused_429, (double)t->setup_us / 1e6,
            (double)t->connect_us / 1e6, (double)t->prime_us / 1e6);
    if (!cfg->idle)
        fprintf(out,
                "conversations: %llu/%llu created (%llu retries, %llu failed, %llu left "
                "out)\n",
                (unsigned long long)c->convs_created, (unsigned long long)c->convs_target,
                (unsigned long long)c->setup_retries, (unsigned long long)c->setup_failed,
                (unsigned long long)c->convs_excluded);
    if (!cfg->idle) {
        fprintf(out, "messages: sent %llu, acknowledged %llu, received %llu, echoed %llu\n",
                (unsigned long long)c->sent, (unsigned long long)c->acked,
                (unsigned long long)c->received, (unsigned long long)c->echoes);
        fprintf(out,
                "   in the measured %.1f s: %llu sent (%.0f/s), %llu of them acknowledged "
                "(%.0f/s), %llu deliveries of them to other members (%.0f/s)%s\n",
                (double)t->measure_us / 1e6, (unsigned long long)c->sent_in_window,
                per_s(c->sent_in_window, t->measure_us), (unsigned long long)c->acked_in_window,
                per_s(c->acked_in_window, t->measure_us), (unsigned long long)c->received_in_window,
                per_s(c->received_in_window, t->measure_us),
                cfg->ingest_only ? " (ingest only: deliveries not checked)" : "");
        fprintf(out,
                "   drain %.1f s; window stalls %llu; unanswered %llu (timeouts %llu, lost "
                "with their connection %llu, late answers %llu)\n",
                (double)t->drain_us / 1e6, (unsigned long long)c->window_stalls,
                (unsigned long long)(c->ack_timeouts + c->lost_unacked),
                (unsigned long long)c->ack_timeouts, (unsigned long long)c->lost_unacked,
                (unsigned long long)c->acked_late);
        if (cfg->receipts)
            fprintf(out, "   receipts: %llu sent, %llu received by senders\n",
                    (unsigned long long)c->receipts_sent, (unsigned long long)c->receipts_received);
    }
    fprintf(out, "\nlatency (ms)                  count       p50       p90       p99     p99.9"
                 "       max      mean\n");
    for (int i = 0; i < LG_H_N; i++)
        print_hist(out, &r->h[i], hist_titles[i]);

    if (cfg->storm) {
        fprintf(out,
                "\nstorm: %llu dropped, %llu messages sent while away (%llu acknowledged), "
                "%llu back, %llu synced (%llu frames), %llu caught up, %llu retries\n",
                (unsigned long long)c->storm_dropped, (unsigned long long)c->storm_sent,
                (unsigned long long)c->storm_acked, (unsigned long long)c->storm_reconnected,
                (unsigned long long)c->storm_synced, (unsigned long long)c->storm_sync_frames,
                (unsigned long long)c->storm_caught_up, (unsigned long long)c->storm_retries);
        if (cfg->storm_settle[0] != '\0')
            fprintf(out, "   settled (--storm-settle) %.1f s after the last missed message\n",
                    (double)t->settle_us / 1e6);
        fprintf(out, "   all synced and caught up after %.3f s%s\n", (double)t->storm_us / 1e6,
                c->storm_incomplete ? " -- NOT FINISHED within storm_timeout" : "");
    }

    fprintf(out, "\nerrors: %llu error frames", (unsigned long long)c->error_frames);
    if (c->error_frames > 0)
        fprintf(out,
                " (bad_frame %llu, unknown_type %llu, too_large %llu, forbidden %llu, "
                "rate_limited %llu, too_many_connections %llu, unavailable %llu, not_found "
                "%llu, internal %llu, other %llu)",
                (unsigned long long)c->err_bad_frame, (unsigned long long)c->err_unknown_type,
                (unsigned long long)c->err_too_large, (unsigned long long)c->err_forbidden,
                (unsigned long long)c->err_rate_limited,
                (unsigned long long)c->err_too_many_connections,
                (unsigned long long)c->err_unavailable, (unsigned long long)c->err_not_found,
                (unsigned long long)c->err_internal, (unsigned long long)c->err_other);
    fprintf(out, "; %llu unexpected closes", (unsigned long long)c->closes_unexpected);
    if (c->closes_unexpected > 0)
        fprintf(out,
                " (1001 %llu, 1011 %llu, 4000 %llu, 4001 %llu, other %llu, no close frame "
                "%llu; %llu reconnected)",
                (unsigned long long)c->close_1001, (unsigned long long)c->close_1011,
                (unsigned long long)c->close_4000, (unsigned long long)c->close_4001,
                (unsigned long long)c->close_other, (unsigned long long)c->close_eof,
                (unsigned long long)c->reconnects);
    fprintf(out, "; %llu connect errors, %llu connect timeouts\n",
            (unsigned long long)c->connect_errors, (unsigned long long)c->connect_timeouts);
    fprintf(out, "heartbeats: %llu server pings answered, %llu client pings\n",
            (unsigned long long)c->pings_received, (unsigned long long)c->pings_sent);
    fprintf(out,
            "load generator: %.1f s user + %.1f s system CPU, %.1f MiB peak RSS (all "
            "processes)\n",
            (double)t->cpu_user_us / 1e6, (double)t->cpu_sys_us / 1e6,
            (double)t->maxrss_kib / 1024.0);

    fprintf(out,
            "\nloss: missing %llu (echoes %llu), duplicated %llu, seq mismatches %llu; "
            "sync duplicates %llu (allowed), delivered without answer %llu, foreign %llu\n",
            (unsigned long long)c->missing, (unsigned long long)c->missing_echo,
            (unsigned long long)c->duplicates, (unsigned long long)c->seq_mismatches,
            (unsigned long long)c->sync_duplicates, (unsigned long long)c->delivered_unacked,
            (unsigned long long)c->unexpected_messages);
    switch (lg_report_verdict(r, cfg)) {
    case 0:
        if (cfg->idle)
            fprintf(out, "RESULT: OK -- %llu connections held, %llu closed unexpectedly\n",
                    (unsigned long long)c->conns_opened, (unsigned long long)c->closes_unexpected);
        else
            fprintf(out, "RESULT: OK -- every acknowledged message arrived exactly once\n");
        break;
    case 1:
        fprintf(out,
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                "!!! RESULT: FAILED -- %llu MISSING, %llu MISSING ECHOES, %llu DUPLICATED,"
                " %llu SEQ MISMATCHES\n"
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
                (unsigned long long)c->missing, (unsigned long long)c->missing_echo,
                (unsigned long long)c->duplicates, (unsigned long long)c->seq_mismatches);
        break;
    default:
        fprintf(out,
                "\n!!! RESULT: INCOMPLETE -- the run could not be set up as asked "
                "(failed connections %llu, conversations failed %llu / left out %llu, "
                "acknowledged %llu, unexpected closes %llu%s)\n",
                (unsigned long long)c->conns_failed, (unsigned long long)c->setup_failed,
                (unsigned long long)c->convs_excluded, (unsigned long long)c->acked,
                (unsigned long long)c->closes_unexpected,
                c->storm_incomplete ? ", storm unfinished" : "");
        break;
    }
}

static json_t *hist_json(const lg_hist_t *h)
{
    json_t *o = json_object();
    json_t *b = json_array();
    json_object_set_new(o, "count", json_integer((json_int_t)h->count));
    json_object_set_new(o, "min_us", json_integer((json_int_t)h->min));
    json_object_set_new(o, "mean_us",
                        json_real(h->count ? (double)h->sum / (double)h->count : 0.0));
    json_object_set_new(o, "p50_us", json_integer((json_int_t)lg_hist_percentile(h, 0.50)));
    json_object_set_new(o, "p90_us", json_integer((json_int_t)lg_hist_percentile(h, 0.90)));
    json_object_set_new(o, "p99_us", json_integer((json_int_t)lg_hist_percentile(h, 0.99)));
    json_object_set_new(o, "p999_us", json_integer((json_int_t)lg_hist_percentile(h, 0.999)));
    json_object_set_new(o, "max_us", json_integer((json_int_t)h->max));
    /* The non-empty buckets as [upper bound us, count], to merge or plot later. */
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++) {
        if (h->buckets[i] == 0)
            continue;
        json_array_append_new(
            b, json_pack("[II]", (json_int_t)lg_hist_bucket_upper(i), (json_int_t)h->buckets[i]));
    }
    json_object_set_new(o, "buckets", b);
    return o;
}

int lg_report_write_json(const lg_report_t *r, const lg_config_t *cfg, const lg_plan_t *plan,
                         const lg_machine_t *m, const char *path, chat_error_t *err)
{
    json_t *root = json_object();
    json_t *opts = json_object(), *mach = json_object(), *counts = json_object();
    json_t *times = json_object(), *lat = json_object(), *rates = json_object();
    json_t *gws = json_array();

    json_object_set_new(root, "tool", json_string("chat-loadgen"));
    json_object_set_new(root, "date", json_string(m->date));
    json_object_set_new(root, "run_id", json_string(plan->run_id));
    int verdict = lg_report_verdict(r, cfg);
    json_object_set_new(root, "result",
                        json_string(verdict == 0   ? "ok"
                                    : verdict == 1 ? "loss"
                                                   : "incomplete"));

    json_object_set_new(mach, "host", json_string(m->host));
    json_object_set_new(mach, "nproc", json_integer(m->nproc));
    json_object_set_new(mach, "memory_bytes", json_integer((json_int_t)m->mem_bytes));
    json_object_set_new(mach, "kernel", json_string(m->kernel));
    json_object_set_new(mach, "cpu", json_string(m->cpu));
    json_object_set_new(root, "machine", mach);

    for (uint32_t i = 0; i < plan->n_gw; i++)
        json_array_append_new(gws, json_string(plan->gw_text[i]));
    json_object_set_new(opts, "gateways", gws);
    json_object_set_new(opts, "mode", json_string(cfg->idle ? "idle" : cfg->mode));
    json_object_set_new(opts, "conns", json_integer(cfg->conns));
    json_object_set_new(opts, "group_size", json_integer(plan->group));
    json_object_set_new(opts, "conversations", json_integer(plan->convs));
    json_object_set_new(opts, "procs", json_integer(plan->procs));
    json_object_set_new(opts, "src_addrs", json_integer(plan->src_addrs));
    json_object_set_new(opts, "rate", json_integer(cfg->rate));
    json_object_set_new(opts, "window", json_integer(cfg->window));
    json_object_set_new(opts, "body_size", json_integer(cfg->body_size));
    json_object_set_new(opts, "duration_s", json_integer(cfg->duration));
    json_object_set_new(opts, "warmup_s", json_integer(cfg->warmup));
    json_object_set_new(opts, "drain_s", json_integer(cfg->drain));
    json_object_set_new(opts, "receipts", json_boolean(cfg->receipts));
    json_object_set_new(opts, "storm", json_boolean(cfg->storm));
    json_object_set_new(opts, "storm_missed", json_integer(cfg->storm_missed));
    json_object_set_new(opts, "ping_interval_s", json_integer(cfg->ping_interval));
    json_object_set_new(root, "options", opts);

#define LG_COUNTER_JSON(name, what)                                                                \
    json_object_set_new(counts, #name, json_integer((json_int_t)r->c.name));
    LG_COUNTERS(LG_COUNTER_JSON)
#undef LG_COUNTER_JSON
    json_object_set_new(root, "counts", counts);

    json_object_set_new(times, "setup_s", json_real((double)r->t.setup_us / 1e6));
    json_object_set_new(times, "connect_s", json_real((double)r->t.connect_us / 1e6));
    json_object_set_new(times, "prime_s", json_real((double)r->t.prime_us / 1e6));
    json_object_set_new(times, "measured_s", json_real((double)r->t.measure_us / 1e6));
    json_object_set_new(times, "drain_s", json_real((double)r->t.drain_us / 1e6));
    json_object_set_new(times, "storm_s", json_real((double)r->t.storm_us / 1e6));
    json_object_set_new(times, "settle_s", json_real((double)r->t.settle_us / 1e6));
    json_object_set_new(times, "loadgen_cpu_user_s", json_real((double)r->t.cpu_user_us / 1e6));
    json_object_set_new(times, "loadgen_cpu_sys_s", json_real((double)r->t.cpu_sys_us / 1e6));
    json_object_set_new(times, "loadgen_maxrss_kib", json_integer((json_int_t)r->t.maxrss_kib));
    json_object_set_new(root, "times", times);

    json_object_set_new(rates, "sent_per_s",
                        json_real(per_s(r->c.sent_in_window, r->t.measure_us)));
    json_object_set_new(rates, "acked_per_s",
                        json_real(per_s(r->c.acked_in_window, r->t.measure_us)));
    json_object_set_new(rates, "received_per_s",
                        json_real(per_s(r->c.received_in_window, r->t.measure_us)));
    json_object_set_new(root, "rates", rates);

    for (int i = 0; i < LG_H_N; i++)
        json_object_set_new(lat, hist_names[i], hist_json(&r->h[i]));
    json_object_set_new(root, "latency", lat);

    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    if (rc != 0)
        return chat_error_set(err, CHAT_EIO, "cannot write %s: %s", path, strerror(errno));
    return 0;
}
