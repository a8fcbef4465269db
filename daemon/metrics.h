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

/* Only a pointer to the server's totals is needed here; the full type is in
 * stream/ws_server.h, which is not included so that engine-side files (daemon/scheduler.c)
 * can bump counters without pulling in the protocol's names. */
typedef struct fb_ws_totals fb_ws_totals;

#define FBD_ENCODE_BUCKETS 11
#define FBD_CHUNK_BUCKETS 14

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

    /* engine (daemon/scheduler.c) */
    atomic_uint_least64_t engine_chunks;      /* chunks generated, all sessions */
    atomic_uint_least64_t engine_frames;      /* frames generated */
    atomic_uint_least64_t engine_batched;     /* chunks whose DiT passes ran batched with others */
    atomic_uint_least64_t engine_errors;      /* engine failures (each ends its session) */
    atomic_uint_least64_t chunk_count;
    atomic_uint_least64_t chunk_ns_sum;
    atomic_uint_least64_t chunk_bucket[FBD_CHUNK_BUCKETS]; /* per bucket, not cumulative */
    atomic_uint_least64_t refused_max;        /* starts refused: --max-sessions reached */
    atomic_uint_least64_t refused_kv;         /* ... the engine's KV pool is full */
    atomic_uint_least64_t refused_compute;    /* ... no room at full frame rate */
    atomic_uint_least64_t frames_starved;     /* frame slots an engine session had nothing for */
} fbd_metrics;

extern fbd_metrics fbd_metrics_g;

/* Records one frame's encode time. */
void fbd_metrics_observe_encode(uint64_t ns);
/* Records the engine time of one stream's chunk. */
void fbd_metrics_observe_chunk(uint64_t ns);

/* Figures the service thread supplies. */
typedef struct fbd_metrics_view {
    int sessions;
    const fb_ws_totals *ws;
    double uptime_seconds;
    const char *version;
    /* engine figures; has_engine 0 for the test pattern */
    int has_engine;
    int engine_capacity;        /* sessions at full frame rate (estimate) */
    int engine_kv_streams;      /* streams the KV pool holds */
    int engine_streams;         /* engine sessions open */
    double engine_chunk_ms;     /* running chunk-time estimate */
    double engine_slowdown;
} fbd_metrics_view;

/* The whole exposition text (malloc'd; *len gets its length), or NULL when out of memory. */
char *fbd_metrics_render(const fbd_metrics_view *v, size_t *len);

#endif
