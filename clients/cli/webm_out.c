/* clients/cli/webm_out.c - WebM file output for `flipbook record` (see webm_out.h). */
#include "clients/cli/webm_out.h"

#include <stdio.h>

#if FB_CLI_HAVE_WEBM

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream/webm.h"

struct fb_webm_out {
    int fd;
    fb_webm_sink sink;
    fb_webm *mux;
};

static void mux_error(const fb_webm_out *w, fb_webm_status st, char *err, size_t err_size) {
    int e = w->mux ? fb_webm_io_errno(w->mux) : 0;
    if (st == FB_WEBM_ERR_IO && e)
        snprintf(err, err_size, "%s (%s)", fb_webm_status_str(st), strerror(e));
    else
        snprintf(err, err_size, "%s", fb_webm_status_str(st));
}

int fb_webm_out_open(fb_webm_out **out, const char *path, int width, int height, int fps,
                     char *err, size_t err_size) {
    *out = NULL;
    fb_webm_out *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        snprintf(err, err_size, "cannot create %s: %s", path, strerror(errno));
        free(w);
        return -1;
    }
    w->sink = fb_webm_fd_sink(w->fd);
    fb_webm_params p = {width, height, fps};
    fb_webm_status st = fb_webm_open(&w->sink, &p, &w->mux);
    if (st != FB_WEBM_OK) {
        mux_error(w, st, err, err_size);
        close(w->fd);
        free(w);
        return -1;
    }
    *out = w;
    return 0;
}

int fb_webm_out_write(fb_webm_out *w, const uint8_t *vp9, size_t size, int is_key, int64_t pts_us,
                      char *err, size_t err_size) {
    fb_webm_status st = fb_webm_write_frame(w->mux, vp9, size, pts_us, is_key);
    if (st != FB_WEBM_OK) {
        mux_error(w, st, err, err_size);
        return -1;
    }
    return 0;
}

int fb_webm_out_finish(fb_webm_out *w, uint64_t *bytes_out, char *err, size_t err_size) {
    if (!w) return 0;
    int rc = 0;
    fb_webm_status st = fb_webm_finalize(w->mux);
    if (st != FB_WEBM_OK) {
        mux_error(w, st, err, err_size);
        rc = -1;
    }
    if (bytes_out) *bytes_out = fb_webm_size(w->mux);
    if (fsync(w->fd) != 0 && rc == 0) {
        snprintf(err, err_size, "fsync: %s", strerror(errno));
        rc = -1;
    }
    if (close(w->fd) != 0 && rc == 0) {
        snprintf(err, err_size, "close: %s", strerror(errno));
        rc = -1;
    }
    fb_webm_free(w->mux);
    free(w);
    return rc;
}

#else /* a tree whose fb_media has no muxer yet: report it instead of failing to build */

int fb_webm_out_open(fb_webm_out **out, const char *path, int width, int height, int fps,
                     char *err, size_t err_size) {
    (void)path, (void)width, (void)height, (void)fps;
    *out = NULL;
    snprintf(err, err_size, "this build of flipbook has no WebM muxer");
    return -1;
}

int fb_webm_out_write(fb_webm_out *w, const uint8_t *vp9, size_t size, int is_key, int64_t pts_us,
                      char *err, size_t err_size) {
    (void)w, (void)vp9, (void)size, (void)is_key, (void)pts_us;
    snprintf(err, err_size, "this build of flipbook has no WebM muxer");
    return -1;
}

int fb_webm_out_finish(fb_webm_out *w, uint64_t *bytes_out, char *err, size_t err_size) {
    (void)w, (void)err, (void)err_size;
    if (bytes_out) *bytes_out = 0;
    return 0;
}

#endif
