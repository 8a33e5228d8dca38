#include "cs-stop.h"

#include <signal.h>
#include <string.h>
#include <time.h>

#include "chat-id.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

void cs_stop_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cs_stopping(void)
{
    return stopping != 0;
}

void cs_stop_request(void)
{
    stopping = 1;
}

void cs_stop_pause_ms(uint64_t ms)
{
    uint64_t end = chat_mono_ms() + ms;
    while (!stopping && chat_mono_ms() < end) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

uint64_t cs_stop_backoff(uint64_t ms)
{
    return ms == 0 ? BACKOFF_MIN_MS : ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
}
