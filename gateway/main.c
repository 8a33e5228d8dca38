/* chat-gateway: terminates WebSockets and HTTP for clients, produces their
 * events to Kafka, and writes what the consumers route to it. With
 * --workers N it forks N processes that share the port (SO_REUSEPORT), each
 * with its own loop, gateway id (<id>-<n>) and Redis channel. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chat-error.h"
#include "chat-log.h"
#include "chat-mongo.h"
#include "chat-redis.h"
#include "gw-private.h"
#include "gw-static.h"

static void flush_cb(uv_check_t *h)
{
    /* After each round of I/O callbacks: one write per touched socket. */
    gw_conn_flush_all(h->data);
}

static void heartbeat_cb(uv_timer_t *t)
{
    gw_conn_heartbeat(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    gw_t *gw = server->data;
    if (status != 0) {
        CHAT_WARN("gateway %s: accept: %s", gw->id, uv_strerror(status));
        return;
    }
    int rc = gw_conn_accept(gw);
    if (rc != 0)
        CHAT_WARN("gateway %s: accept failed: %s", gw->id, chat_strerror(rc));
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    gw_t *gw = s->data;
    CHAT_INFO("gateway %s: signal %d, shutting down", gw->id, signum);
    uv_close((uv_handle_t *)&gw->listener, NULL);
    /* Say goodbye (1001) and let the frames leave before the loop stops. */
    for (size_t i = 0; i < gw->cap; i++) {
        gw_conn_t *conn = gw->slots[i];
        if (conn == NULL)
            continue;
        if (conn->state == GW_CONN_WS)
            gw_conn_ws_close(conn, 1001, "going away");
        else
            gw_conn_close(conn);
    }
    gw_conn_flush_all(gw);
    uv_stop(gw->loop);
}

/* Opens the listening socket ourselves so that SO_REUSEPORT is set before
 * bind (libuv 1.44 has no flag for it). */
static int listen_socket(const gw_config_t *cfg, chat_error_t *err)
{
    struct sockaddr_in addr;
    int one = 1;
    if (uv_ip4_addr(cfg->host, (int)cfg->port, &addr) != 0)
        return chat_error_set(err, CHAT_EINVAL, "host %s is not an IPv4 address", cfg->host);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return chat_error_set(err, -errno, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int e = errno;
        close(fd);
        return chat_error_set(err, -e, "bind %s:%lld: %s", cfg->host, (long long)cfg->port,
                              strerror(e));
    }
    return fd;
}

static int run(gw_config_t *cfg, const char *id)
{
    gw_t *gw = calloc(1, sizeof(*gw));
    chat_error_t err = {0, ""};
    int rc = 1;
    if (gw == NULL)
        return 1;
    uv_loop_t *loop = uv_default_loop();
    gw->loop = loop;
    gw->cfg = cfg;
    snprintf(gw->id, sizeof(gw->id), "%s", id);
    snprintf(gw->channel, sizeof(gw->channel), CHAT_GATEWAY_CHANNEL_PREFIX "%s", gw->id);
    gw->secret = (unsigned char *)cfg->jwt_secret;
    gw->secret_len = strlen(cfg->jwt_secret);
    gw_map_init(&gw->users);
    gw_map_init(&gw->members);
    gw_map_init(&gw->conv_members);
    chat_bucket_init(&gw->conn_bucket, (double)cfg->conn_burst, uv_now(loop));
    gw->web = gw_static_new(cfg->web_root);
    chat_buf_init(&gw->scratch, 8 << 20);
    chat_buf_init(&gw->encbuf, 8 << 20);
    chat_buf_init(&gw->framebuf, (size_t)cfg->max_frame);

    if (gw_store_start(gw, &err) != 0 || gw_producer_start(gw, &err) != 0 ||
        gw_presence_start(gw, &err) != 0) {
        CHAT_ERROR("gateway %s: %s", gw->id, err.message);
        goto out;
    }
    int fd = listen_socket(cfg, &err);
    if (fd < 0) {
        CHAT_ERROR("gateway %s: %s", gw->id, err.message);
        goto out;
    }
    uv_tcp_init(loop, &gw->listener);
    gw->listener.data = gw;
    if ((rc = uv_tcp_open(&gw->listener, fd)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&gw->listener, (int)cfg->backlog, on_connection)) != 0) {
        CHAT_ERROR("gateway %s: listen: %s", gw->id, uv_strerror(rc));
        rc = 1;
        goto out;
    }
    uv_check_init(loop, &gw->flush_check);
    gw->flush_check.data = gw;
    uv_check_start(&gw->flush_check, flush_cb);
    uv_timer_init(loop, &gw->heartbeat_timer);
    gw->heartbeat_timer.data = gw;
    uv_timer_start(&gw->heartbeat_timer, heartbeat_cb, 1000, 1000);
    uv_signal_init(loop, &gw->sigterm);
    uv_signal_init(loop, &gw->sigint);
    gw->sigterm.data = gw->sigint.data = gw;
    uv_signal_start(&gw->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&gw->sigint, signal_cb, SIGINT);

    CHAT_INFO("gateway %s: listening on %s:%lld (kafka %s, redis %s:%lld, mongo %s)", gw->id,
              cfg->host, (long long)cfg->port, cfg->kafka_brokers, cfg->redis_host,
              (long long)cfg->redis_port, gw->db);
    uv_run(loop, UV_RUN_DEFAULT);

    /* Drain: close frames out, pending Kafka reports served, jobs done. */
    for (int i = 0; i < 200 && (gw->metrics.connections_open > 0 || gw->jobs > 0); i++) {
        gw_conn_flush_all(gw);
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    /* Store work that has not found a thread by now is not started: behind
     * a slow store the queue (membership checks, HTTP reads, sync rounds)
     * could hold the stop for minutes. What runs is waited for below. */
    if (gw->jobs > 0) {
        int cancelled = gw_store_cancel_queued(gw);
        CHAT_INFO("gateway %s: stopping: %d queued store jobs cancelled, %d still running", gw->id,
                  cancelled, gw->jobs - cancelled);
    }
    rc = 0;
out:
    gw_presence_stop(gw);
    gw_producer_stop(gw);
    uv_walk(loop, close_walk_cb, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    gw_store_stop(gw);
    uv_loop_close(loop);
    gw_map_close(&gw->users);
    gw_map_close(&gw->members);
    gw_notify_free_cache(gw);
    gw_notify_presence_free(gw);
    gw_map_close(&gw->conv_members);
    gw_static_destroy(gw->web);
    chat_buf_close(&gw->scratch);
    chat_buf_close(&gw->encbuf);
    chat_buf_close(&gw->framebuf);
    free(gw->slots);
    free(gw->gens);
    free(gw->free_slots);
    free(gw);
    mongoc_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    gw_config_t cfg;
    chat_error_t err;
    char id[CHAT_NAME_MAX + 1];

    signal(SIGPIPE, SIG_IGN);
    if (sodium_init() < 0) {
        fprintf(stderr, "chat-gateway: libsodium failed to initialise\n");
        return 1;
    }
    /* The thread pool runs MongoDB calls; the default of 4 is small. */
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    int rc = gw_config_load(&cfg, argc, argv, &err);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "chat-gateway: %s\n", err.message);
        return 2;
    }
    int level = chat_log_level_parse(cfg.log_level);
    chat_log_init("chat-gateway", level < 0 ? CHAT_LOG_INFO : level);
    if (cfg.gateway_id[0])
        snprintf(id, sizeof(id), "%s", cfg.gateway_id);
    else
        snprintf(id, sizeof(id), "gw-%lld", (long long)cfg.port);
    if (!chat_name_valid(id, strlen(id)) || strlen(id) > 48) {
        fprintf(stderr, "chat-gateway: gateway_id must be 1-48 of [A-Za-z0-9_.:-]\n");
        return 2;
    }
    if (cfg.workers == 1)
        return run(&cfg, id);

    /* Several workers: each is a whole gateway with its own id. */
    pid_t pids[64];
    for (int i = 0; i < cfg.workers; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            /* id is at most 48 characters (checked above). */
            char wid[CHAT_NAME_MAX + 16];
            snprintf(wid, sizeof(wid), "%.48s-%d", id, i);
            return run(&cfg, wid);
        }
        pids[i] = pid;
    }
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    int status, failed = 0;
    for (int i = 0; i < cfg.workers; i++) {
        /* Forward shutdown: the workers got the signal from the process group. */
        if (waitpid(pids[i], &status, 0) > 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
            failed = 1;
    }
    return failed;
}
