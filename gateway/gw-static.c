#include "gw-static.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILES 64
#define MAX_SIZE  (4u << 20)

typedef struct gw_file_s {
    char name[128];
    const char *ctype;
    char *data;
    size_t size;
} gw_file_t;

struct gw_static_s {
    gw_file_t files[MAX_FILES];
    int n;
};

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".json", "application/json"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

gw_static_t *gw_static_new(const char *dir)
{
    gw_static_t *st = calloc(1, sizeof(*st));
    char path[4096];
    struct dirent *de;
    if (st == NULL)
        return NULL;
    DIR *d = opendir(dir);
    if (d == NULL)
        return st;
    while ((de = readdir(d)) != NULL && st->n < MAX_FILES) {
        struct stat sb;
        if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(st->files[0].name))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size > MAX_SIZE)
            continue;
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        gw_file_t *file = &st->files[st->n];
        file->data = malloc((size_t)sb.st_size + 1);
        if (file->data != NULL &&
            fread(file->data, 1, (size_t)sb.st_size, f) == (size_t)sb.st_size) {
            size_t nlen = strlen(de->d_name); /* < sizeof(name): checked above */
            memcpy(file->name, de->d_name, nlen + 1);
            file->size = (size_t)sb.st_size;
            file->ctype = content_type(file->name);
            st->n++;
        } else {
            free(file->data);
            file->data = NULL;
        }
        fclose(f);
    }
    closedir(d);
    return st;
}

void gw_static_destroy(gw_static_t *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < st->n; i++)
        free(st->files[i].data);
    free(st);
}

int gw_static_find(const gw_static_t *st, const char *path, size_t len, const char **ctype,
                   const char **data, size_t *size)
{
    if (st == NULL || len == 0 || path[0] != '/')
        return -1;
    const char *name = path + 1;
    size_t nlen = len - 1;
    if (nlen == 0) {
        name = "index.html";
        nlen = 10;
    }
    for (int i = 0; i < st->n; i++) {
        if (strlen(st->files[i].name) == nlen && memcmp(st->files[i].name, name, nlen) == 0) {
            *ctype = st->files[i].ctype;
            *data = st->files[i].data;
            *size = st->files[i].size;
            return 0;
        }
    }
    return -1;
}
