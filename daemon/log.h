/* daemon/log.h - the daemon's log: levels, ISO 8601 UTC timestamps with milliseconds, module
 * names, one line per call on stderr.
 *
 *   FB_LOG_INFO("session", "started %s (%dx%d@%d)", id, w, h, fps);
 *   -> 2025-01-31T12:00:00.123Z info  session: started 1a2b3c4d5e6f (256x256@30)
 *
 * The macros compare the level first and only then evaluate their arguments, so debug lines
 * cost nothing when debug is off. fb_log_route_lws() sends libwebsockets' own messages through
 * here (errors and warnings; notices too at debug).
 *
 * Thread-safety: any thread may log; each line is written with a single write(2) so lines from
 * different threads do not interleave. The level is an atomic global (the daemon is the only
 * user of this module).
 */
#ifndef FLIPBOOK_DAEMON_LOG_H
#define FLIPBOOK_DAEMON_LOG_H

#include <stdatomic.h>

typedef enum fb_log_level {
    FB_LOG_LEVEL_ERROR = 0,
    FB_LOG_LEVEL_WARN = 1,
    FB_LOG_LEVEL_INFO = 2,
    FB_LOG_LEVEL_DEBUG = 3
} fb_log_level;

extern atomic_int fb_log_threshold;

#define FB_LOG(level, module, ...)                                                   \
    do {                                                                             \
        if ((int)(level) <= atomic_load_explicit(&fb_log_threshold, memory_order_relaxed)) \
            fb_log_write((level), (module), __VA_ARGS__);                            \
    } while (0)
#define FB_LOG_ERROR(module, ...) FB_LOG(FB_LOG_LEVEL_ERROR, module, __VA_ARGS__)
#define FB_LOG_WARN(module, ...) FB_LOG(FB_LOG_LEVEL_WARN, module, __VA_ARGS__)
#define FB_LOG_INFO(module, ...) FB_LOG(FB_LOG_LEVEL_INFO, module, __VA_ARGS__)
#define FB_LOG_DEBUG(module, ...) FB_LOG(FB_LOG_LEVEL_DEBUG, module, __VA_ARGS__)

void fb_log_set_level(fb_log_level level);
/* Writes one line unconditionally (use the macros). */
void fb_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "error" | "warn" | "info" | "debug" -> level, or -1. */
int fb_log_level_parse(const char *name);
const char *fb_log_level_name(int level);
/* Routes libwebsockets' log through fb_log_write (module "lws"), at the current level. */
void fb_log_route_lws(void);

#endif
