/* chat-loadgen: drives the chat gateways like a crowd of users and says
 * what they felt. The parent forks --procs children (each holds at most
 * 19,000 connections: the open-file limit is 20,000), starts them at once
 * when all are connected, relays the storm's reconnect order, prints a
 * progress line a second, then merges their reports, prints the summary
 * and writes --json. Exit status: 0 when every message arrived exactly
 * once, 1 on loss or duplicates, 2 when the run could not be done as asked. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chat-error.h"
#include "chat-log.h"
#include "lg-config.h"
#include "lg-pipe.h"
#include "lg-private.h"
#include "lg-report.h"
#include "lg-worker.h"

typedef struct child_s {
    pid_t pid;
    int up;   /* we read */
    int down; /* we write */
    int ready;
    int storm_ready;
    int reported;
    int gone;
    lg_progress_t last;
    lg_report_t *rep;
} child_t;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted++;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void tell_all(child_t *kids, uint32_t n, uint32_t cmd)
{
    for (uint32_t i = 0; i < n; i++) {
        if (kids[i].gone || kids[i].down < 0)
            continue;
        ssize_t w = write(kids[i].down, &cmd, sizeof(cmd));
        (void)w; /* a child that went away is noticed on its own pipe */
    }
}

static void print_progress(const child_t *kids, uint32_t n, uint64_t start_us, lg_counts_t *prev)
{
    lg_counts_t sum;
    uint64_t open = 0;
    uint32_t phase = LG_PH_DONE;
    memset(&sum, 0, sizeof(sum));
    for (uint32_t i = 0; i < n; i++) {
        const uint64_t *s = (const uint64_t *)&kids[i].last.c;
        uint64_t *d = (uint64_t *)&sum;
        for (size_t k = 0; k < sizeof(sum) / sizeof(uint64_t); k++)
            d[k] += s[k];
        open += kids[i].last.open;
        if (kids[i].last.phase < phase)
            phase = kids[i].last.phase;
    }
    fprintf(stderr,
            "[%6.1fs] %-10s convs %llu  open %llu  sent %llu (+%llu)  acked %llu  recv %llu "
            "(+%llu)  errors %llu  closes %llu\n",
            (double)(mono_us() - start_us) / 1e6, lg_phase_name(phase),
            (unsigned long long)sum.convs_created, (unsigned long long)open,
            (unsigned long long)sum.sent, (unsigned long long)(sum.sent - prev->sent),
            (unsigned long long)sum.acked, (unsigned long long)sum.received,
            (unsigned long long)(sum.received - prev->received),
            (unsigned long long)sum.error_frames, (unsigned long long)sum.closes_unexpected);
    *prev = sum;
}

/* Reads one message of child k. Returns 0, or an error when it is gone. */
static int read_message(child_t *kid)
{
    lg_pipe_hdr_t h;
    int rc = lg_pipe_read_all(kid->up, &h, sizeof(h));
    if (rc != 0)
        return rc;
    switch (h.type) {
    case LG_UP_READY:
    case LG_UP_PROGRESS:
    case LG_UP_STORM_READY:
        if (h.len != sizeof(lg_progress_t))
            return CHAT_EPARSE;
        if ((rc = lg_pipe_read_all(kid->up, &kid->last, sizeof(kid->last))) != 0)
            return rc;
        if (h.type == LG_UP_READY)
            kid->ready = 1;
        if (h.type == LG_UP_STORM_READY)
            kid->storm_ready = 1;
        return 0;
    case LG_UP_REPORT:
        if (h.len != sizeof(lg_report_t))
            return CHAT_EPARSE;
        if ((rc = lg_pipe_read_all(kid->up, kid->rep, sizeof(*kid->rep))) != 0)
            return rc;
        kid->reported = 1;
        return 0;
    default:
        return CHAT_EPARSE;
    }
}

static int spawn(child_t *kids, uint32_t n, const lg_config_t *cfg, const lg_plan_t *plan)
{
    for (uint32_t i = 0; i < n; i++) {
        int up[2], down[2];
        if (pipe(up) != 0 || pipe(down) != 0) {
            CHAT_ERROR("pipe: %s", strerror(errno));
            return -1;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            CHAT_ERROR("fork: %s", strerror(errno));
            return -1;
        }
        if (pid == 0) {
            /* The child: Ctrl-C and SIGTERM reach the whole process group
             * and are the parent's to handle (it says stop, and the child
             * still reports). A parent that dies closes the pipe, which
             * stops the child too. */
            signal(SIGINT, SIG_IGN);
            signal(SIGTERM, SIG_IGN);
            for (uint32_t k = 0; k < i; k++) {
                close(kids[k].up);
                close(kids[k].down);
            }
            close(up[0]);
            close(down[1]);
            int status = lg_worker_run(cfg, plan, i, up[1], down[0]);
            fflush(NULL);
            _exit(status);
        }
        close(up[1]);
        close(down[0]);
        kids[i].pid = pid;
        kids[i].up = up[0];
        kids[i].down = down[1];
    }
    return 0;
}

/* The storm's settle command (--storm-settle), run with sh -c once every
 * missed message is acknowledged: the reconnect is ordered when it exits.
 * It runs beside the poll loop (the children's progress must still be
 * read, or they would block on a full pipe). */
typedef struct settle_s {
    pid_t pid;
    int done;
    int ok;
    uint64_t start_us;
    uint64_t took_us;
} settle_t;

/* Starts the command, or sees whether it has ended. Returns 1 once it has
 * (s->ok says how), 0 while it runs. With no command: 1, ok, at once. */
static int settle_step(settle_t *s, const char *cmd, const child_t *kids, uint32_t n)
{
    if (s->done)
        return 1;
    if (cmd[0] == '\0') {
        s->done = s->ok = 1;
        return 1;
    }
    if (s->pid == 0) {
        fprintf(stderr, "chat-loadgen: storm: missed messages sent; settling first: %s\n", cmd);
        s->start_us = mono_us();
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            for (uint32_t i = 0; i < n; i++) {
                close(kids[i].up);
                close(kids[i].down);
            }
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        if (pid < 0) {
            CHAT_ERROR("fork: %s", strerror(errno));
            s->done = 1;
            return 1;
        }
        s->pid = pid;
        return 0;
    }
    int st = 0;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0)
        return 0;
    s->pid = -1;
    s->done = 1;
    s->took_us = mono_us() - s->start_us;
    s->ok = r > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (s->ok)
        fprintf(stderr, "chat-loadgen: storm: settled after %.1f s\n", (double)s->took_us / 1e6);
    else if (r < 0)
        CHAT_ERROR("storm: waiting for the settle command: %s", strerror(errno));
    else if (WIFEXITED(st))
        CHAT_ERROR("storm: the settle command failed (exit %d)", WEXITSTATUS(st));
    else
        CHAT_ERROR("storm: the settle command failed (signal %d)", WTERMSIG(st));
    return 1;
}

static void print_plan(const lg_config_t *cfg, const lg_plan_t *plan)
{
    fprintf(stderr,
            "chat-loadgen: run %s, %lld connections (%u conversations of %u) in %u processes, "
            "%u gateways, %u source addresses\n",
            plan->run_id, (long long)cfg->conns, plan->convs, plan->group, plan->procs, plan->n_gw,
            plan->src_addrs);
}

int main(int argc, char **argv)
{
    lg_config_t cfg;
    lg_plan_t plan;
    chat_error_t err = {0, ""};
    int rc = lg_config_load(&cfg, &plan, argc, argv, &err);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "chat-loadgen: %s\n", err.message);
        return 2;
    }
    chat_log_init("chat-loadgen", chat_log_level_parse(cfg.log_level));
    if (sodium_init() < 0) {
        fprintf(stderr, "chat-loadgen: libsodium failed to start\n");
        return 2;
    }
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    print_plan(&cfg, &plan);

    uint32_t n = plan.procs;
    child_t *kids = calloc(n, sizeof(*kids));
    struct pollfd *pfd = calloc(n, sizeof(*pfd));
    if (kids == NULL || pfd == NULL)
        return 2;
    for (uint32_t i = 0; i < n; i++) {
        kids[i].up = kids[i].down = -1;
        if ((kids[i].rep = calloc(1, sizeof(lg_report_t))) == NULL)
            return 2;
    }
    int failed = spawn(kids, n, &cfg, &plan) != 0;
    uint64_t start_us = mono_us(), last_print = start_us, storm_order_us = 0;
    int told_go = 0, told_storm = 0, told_stop = 0;
    settle_t settle = {0, 0, 0, 0, 0};
    lg_counts_t prev;
    memset(&prev, 0, sizeof(prev));

    while (!failed) {
        uint32_t reported = 0, ready = 0, storm_ready = 0;
        for (uint32_t i = 0; i < n; i++) {
            reported += (uint32_t)kids[i].reported;
            ready += (uint32_t)kids[i].ready;
            storm_ready += (uint32_t)kids[i].storm_ready;
        }
        if (reported == n)
            break;
        if (!told_go && ready == n) {
            fprintf(stderr, "chat-loadgen: all %u processes connected; go\n", n);
            tell_all(kids, n, LG_DOWN_GO);
            told_go = 1;
        }
        if (!told_storm && storm_ready == n && !told_stop &&
            settle_step(&settle, cfg.storm_settle, kids, n)) {
            if (!settle.ok) {
                failed = 1;
                break;
            }
            fprintf(stderr, "chat-loadgen: storm: everyone away, missed messages sent; "
                            "reconnecting all at once\n");
            storm_order_us = mono_us();
            tell_all(kids, n, LG_DOWN_RECONNECT);
            told_storm = 1;
        }
        if (interrupted && !told_stop) {
            fprintf(stderr, "chat-loadgen: interrupted; finishing (again to kill)\n");
            tell_all(kids, n, LG_DOWN_STOP);
            told_stop = 1;
        } else if (interrupted > 1) {
            failed = 1;
            break;
        }
        for (uint32_t i = 0; i < n; i++) {
            pfd[i].fd = kids[i].reported || kids[i].gone ? -1 : kids[i].up;
            pfd[i].events = POLLIN;
            pfd[i].revents = 0;
        }
        int pr = poll(pfd, n, 200);
        if (pr < 0 && errno != EINTR) {
            CHAT_ERROR("poll: %s", strerror(errno));
            failed = 1;
            break;
        }
        for (uint32_t i = 0; i < n && pr > 0; i++) {
            if (pfd[i].revents == 0)
                continue;
            if (read_message(&kids[i]) != 0) {
                fprintf(stderr, "chat-loadgen: process %u (pid %d) ended without a report\n", i,
                        (int)kids[i].pid);
                kids[i].gone = 1;
                failed = 1;
            }
        }
        uint64_t now = mono_us();
        if (cfg.progress && now - last_print >= 1000000u) {
            print_progress(kids, n, start_us, &prev);
            last_print = now;
        }
    }

    if (settle.pid > 0) { /* interrupted while settling */
        kill(settle.pid, SIGTERM);
        waitpid(settle.pid, NULL, 0);
    }
    if (failed) {
        for (uint32_t i = 0; i < n; i++) {
            if (kids[i].pid > 0)
                kill(kids[i].pid, SIGKILL);
        }
    }
    int child_bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        int st = 0;
        if (kids[i].pid > 0 && waitpid(kids[i].pid, &st, 0) > 0 &&
            (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
            child_bad = 1;
        if (kids[i].up >= 0)
            close(kids[i].up);
        if (kids[i].down >= 0)
            close(kids[i].down);
    }
    if (failed) {
        fprintf(stderr, "chat-loadgen: the run failed; no summary\n");
        for (uint32_t i = 0; i < n; i++)
            free(kids[i].rep);
        free(kids);
        free(pfd);
        return 2;
    }

    lg_report_t total;
    lg_machine_t machine;
    lg_report_init(&total);
    for (uint32_t i = 0; i < n; i++)
        lg_report_merge(&total, kids[i].rep);
    if (told_storm && total.t.storm_done_abs > storm_order_us)
        total.t.storm_us = total.t.storm_done_abs - storm_order_us;
    total.t.settle_us = settle.took_us;
    lg_machine_probe(&machine);
    lg_report_print(&total, &cfg, &plan, &machine, stdout);
    fflush(stdout);
    int verdict = lg_report_verdict(&total, &cfg);
    if (cfg.json[0] != '\0') {
        if (lg_report_write_json(&total, &cfg, &plan, &machine, cfg.json, &err) != 0) {
            fprintf(stderr, "chat-loadgen: %s\n", err.message);
            verdict = verdict ? verdict : 2;
        } else {
            fprintf(stderr, "chat-loadgen: results written to %s\n", cfg.json);
        }
    }
    if (child_bad && verdict == 0)
        verdict = 2;
    for (uint32_t i = 0; i < n; i++)
        free(kids[i].rep);
    free(kids);
    free(pfd);
    return verdict;
}
