#include "lg-pipe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat-error.h"

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int lg_pipe_send(int fd, uint32_t type, const void *data, uint32_t len)
{
    lg_pipe_hdr_t h = {type, len};
    /* Header and payload in one write when small: a progress message then
     * never interleaves with anything. */
    char small[4096];
    if (sizeof(h) + len <= sizeof(small)) {
        memcpy(small, &h, sizeof(h));
        if (len > 0)
            memcpy(small + sizeof(h), data, len);
        return write_all(fd, small, sizeof(h) + len);
    }
    int rc = write_all(fd, &h, sizeof(h));
    return rc != 0 ? rc : write_all(fd, data, len);
}

int lg_pipe_read_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r == 0)
            return CHAT_ECLOSED;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}
