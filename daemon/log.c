/* daemon/log.c - timestamped, levelled log lines on stderr (see log.h). */
#include "daemon/log.h"

#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

atomic_int fb_log_threshold = FB_LOG_LEVEL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void fb_log_set_level(fb_log_level level) { atomic_store(&fb_log_threshold, (int)level); }

int fb_log_level_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

const char *fb_log_level_name(int level) {
    return level >= 0 && level < 4 ? level_names[level] : "?";
}

void fb_log_write(int level, const char *module, const char *fmt, ...) {
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, fb_log_level_name(level),
                     module ? module : "-");
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) len = sizeof line - 2;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    /* Messages quote client input (prompts, names): keep one event on one line. */
    for (size_t i = (size_t)n; i < len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f) line[i] = '?';
    line[len++] = '\n';
    /* One write(2) per line: stderr is unbuffered and lines from threads must not mix. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

static void lws_emit(int lws_level, const char *line) {
    int level = (lws_level & LLL_ERR) ? FB_LOG_LEVEL_ERROR
                : (lws_level & LLL_WARN) ? FB_LOG_LEVEL_WARN
                                         : FB_LOG_LEVEL_DEBUG;
    /* lws prefixes its own timestamp: "[2025/01/31 12:00:00:1234] W: text" - drop it. */
    const char *p = line;
    if (*p == '[') {
        const char *q = strchr(p, ']');
        if (q) p = q + 1;
        while (*p == ' ') p++;
        if (p[0] && p[1] == ':' && p[2] == ' ') p += 3;
    }
    FB_LOG(level, "lws", "%s", p);
}

void fb_log_route_lws(void) {
    int levels = LLL_ERR | LLL_WARN;
    if (atomic_load(&fb_log_threshold) >= FB_LOG_LEVEL_DEBUG) levels |= LLL_NOTICE;
    lws_set_log_level(levels, lws_emit);
}
