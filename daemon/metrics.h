/* daemon/metrics.h - process-wide counters and the /metrics text (Prometheus exposition format).
 *
 * Session threads bump the counters here with relaxed atomics; the service thread renders them,
 * together with the figures only it knows (sessions, connections, WebSocket totals), when
 * /metrics is requested.
 *
 * Thread-safety: the counters are atomics (any thread); fbd_metrics_render is reentrant.
 */
#ifndef FLIPBOOK_DAEMON_METRICS_H
#define FLIPBOOK_DAEMON_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "stream/ws_server.h"

#define FBD_ENCODE_BUCKETS 11

typedef struct fbd_metrics {
    atomic_uint_least64_t frames_encoded;
    atomic_uint_least64_t encode_count;
    atomic_uint_least64_t encode_ns_sum;
    atomic_uint_least64_t encode_bucket[FBD_ENCODE_BUCKETS]; /* per bucket, not cumulative */
    atomic_uint_least64_t frames_late;        /* frame slots missed because a frame took too long */
    atomic_uint_least64_t frames_backlog;     /* frames dropped because the socket thread lagged */
    atomic_uint_least64_t recording_bytes;
    atomic_int recordings_active;
    atomic_uint_least64_t recordings_failed;
    atomic_uint_least64_t sessions_started;
    atomic_uint_least64_t sessions_failed;
    atomic_uint_least64_t client_reports;     /* `stats` messages from clients */
    atomic_uint_least64_t client_dropped;     /* frames clients say they dropped */
} fbd_metrics;

extern fbd_metrics fbd_metrics_g;

/* Records one frame's encode time. */
void fbd_metrics_observe_encode(uint64_t ns);

/* Figures the service thread supplies. */
typedef struct fbd_metrics_view {
    int sessions;
    const fb_ws_totals *ws;
    double uptime_seconds;
    const char *version;
} fbd_metrics_view;

/* The whole exposition text (malloc'd; *len gets its length), or NULL when out of memory. */
char *fbd_metrics_render(const fbd_metrics_view *v, size_t *len);

#endif
