/* daemon/metrics.c - counters and their Prometheus rendering (see metrics.h). */
#include "daemon/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/ws_server.h"

fbd_metrics fbd_metrics_g;

/* Upper bounds (seconds) of the encode-time buckets; the last bucket is +Inf. */
static const double encode_le[FBD_ENCODE_BUCKETS - 1] = {0.001, 0.002, 0.005, 0.01, 0.02,
                                                         0.05,  0.1,   0.2,   0.5,  1.0};

void fbd_metrics_observe_encode(uint64_t ns) {
    double s = (double)ns * 1e-9;
    int b = 0;
    while (b < FBD_ENCODE_BUCKETS - 1 && s > encode_le[b]) b++;
    atomic_fetch_add_explicit(&fbd_metrics_g.encode_bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fbd_metrics_g.encode_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fbd_metrics_g.encode_ns_sum, ns, memory_order_relaxed);
}

/* Upper bounds (seconds) of the chunk-time buckets: a tiny model takes milliseconds, a large
 * one on a laptop seconds. */
static const double chunk_le[FBD_CHUNK_BUCKETS - 1] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                       1.0,   2.5,  5.0,   10,  30,  60};

void fbd_metrics_observe_chunk(uint64_t ns) {
    double s = (double)ns * 1e-9;
    int b = 0;
    while (b < FBD_CHUNK_BUCKETS - 1 && s > chunk_le[b]) b++;
    atomic_fetch_add_explicit(&fbd_metrics_g.chunk_bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fbd_metrics_g.chunk_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&fbd_metrics_g.chunk_ns_sum, ns, memory_order_relaxed);
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->failed = 1; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) { b->failed = 1; return; }
        b->p = p;
        b->cap = cap;
    }
}

static void head(sbuf *b, const char *name, const char *type, const char *help) {
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

#define LOAD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

char *fbd_metrics_render(const fbd_metrics_view *v, size_t *len) {
    sbuf b = {malloc(8192), 0, 8192, 0};
    if (!b.p) return NULL;
    const fbd_metrics *m = &fbd_metrics_g;
    const fb_ws_totals *ws = v->ws;

    head(&b, "flipbook_build_info", "gauge", "Version of this flipbookd.");
    put(&b, "flipbook_build_info{version=\"%s\"} 1\n", v->version ? v->version : "");
    head(&b, "flipbook_uptime_seconds", "gauge", "Seconds since flipbookd started.");
    put(&b, "flipbook_uptime_seconds %.3f\n", v->uptime_seconds);
    head(&b, "flipbook_sessions", "gauge", "Sessions running now.");
    put(&b, "flipbook_sessions %d\n", v->sessions);
    head(&b, "flipbook_sessions_started_total", "counter", "Sessions ever started.");
    put(&b, "flipbook_sessions_started_total %llu\n", LOAD(m->sessions_started));
    head(&b, "flipbook_sessions_failed_total", "counter", "Sessions that ended on an error.");
    put(&b, "flipbook_sessions_failed_total %llu\n", LOAD(m->sessions_failed));
    head(&b, "flipbook_viewers", "gauge", "WebSocket connections open now (owners and viewers).");
    put(&b, "flipbook_viewers %llu\n", (unsigned long long)ws->connections);
    head(&b, "flipbook_connections_total", "counter", "WebSocket connections ever accepted.");
    put(&b, "flipbook_connections_total %llu\n", (unsigned long long)ws->accepted);
    head(&b, "flipbook_frames_encoded_total", "counter", "Video frames encoded, all sessions.");
    put(&b, "flipbook_frames_encoded_total %llu\n", LOAD(m->frames_encoded));
    head(&b, "flipbook_frames_sent_total", "counter", "Video messages written to clients.");
    put(&b, "flipbook_frames_sent_total %llu\n", (unsigned long long)ws->frames_sent);
    head(&b, "flipbook_bytes_sent_total", "counter", "Bytes written to WebSocket clients.");
    put(&b, "flipbook_bytes_sent_total %llu\n", (unsigned long long)ws->bytes_sent);
    head(&b, "flipbook_frames_dropped_total", "counter", "Video frames not delivered, by reason.");
    put(&b, "flipbook_frames_dropped_total{reason=\"slow_client\"} %llu\n",
        (unsigned long long)ws->frames_dropped);
    put(&b, "flipbook_frames_dropped_total{reason=\"late\"} %llu\n", LOAD(m->frames_late));
    put(&b, "flipbook_frames_dropped_total{reason=\"backlog\"} %llu\n", LOAD(m->frames_backlog));
    head(&b, "flipbook_clients_closed_slow_total", "counter",
         "Clients closed for staying behind past the hard limit.");
    put(&b, "flipbook_clients_closed_slow_total %llu\n", (unsigned long long)ws->slow_closed);

    head(&b, "flipbook_encode_seconds", "histogram", "Time to encode one video frame.");
    unsigned long long cum = 0;
    for (int i = 0; i < FBD_ENCODE_BUCKETS; i++) {
        cum += LOAD(m->encode_bucket[i]);
        if (i < FBD_ENCODE_BUCKETS - 1)
            put(&b, "flipbook_encode_seconds_bucket{le=\"%g\"} %llu\n", encode_le[i], cum);
        else
            put(&b, "flipbook_encode_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    put(&b, "flipbook_encode_seconds_sum %.6f\n", (double)LOAD(m->encode_ns_sum) * 1e-9);
    put(&b, "flipbook_encode_seconds_count %llu\n", cum);

    head(&b, "flipbook_recording_bytes_total", "counter", "Bytes written to recordings.");
    put(&b, "flipbook_recording_bytes_total %llu\n", LOAD(m->recording_bytes));
    head(&b, "flipbook_recordings_active", "gauge", "Recordings being written now.");
    put(&b, "flipbook_recordings_active %d\n",
        atomic_load_explicit(&m->recordings_active, memory_order_relaxed));
    head(&b, "flipbook_recordings_failed_total", "counter", "Recordings that stopped on an error.");
    put(&b, "flipbook_recordings_failed_total %llu\n", LOAD(m->recordings_failed));

    head(&b, "flipbook_ws_errors_total", "counter", "Error messages sent to clients, by code.");
    for (int e = 1; e < FB_ERR_COUNT; e++)
        put(&b, "flipbook_ws_errors_total{code=\"%s\"} %llu\n", fb_err_code((fb_err)e),
            (unsigned long long)ws->errors[e]);

    head(&b, "flipbook_client_reports_total", "counter", "stats messages received from clients.");
    put(&b, "flipbook_client_reports_total %llu\n", LOAD(m->client_reports));
    head(&b, "flipbook_client_dropped_frames_total", "counter",
         "Frames clients reported dropping (sum of the increases they reported).");
    put(&b, "flipbook_client_dropped_frames_total %llu\n", LOAD(m->client_dropped));

    head(&b, "flipbook_sessions_refused_total", "counter",
         "start requests refused, by reason (max_sessions, kv, compute).");
    put(&b, "flipbook_sessions_refused_total{reason=\"max_sessions\"} %llu\n", LOAD(m->refused_max));
    put(&b, "flipbook_sessions_refused_total{reason=\"kv\"} %llu\n", LOAD(m->refused_kv));
    put(&b, "flipbook_sessions_refused_total{reason=\"compute\"} %llu\n", LOAD(m->refused_compute));
    head(&b, "flipbook_engine_chunks_total", "counter", "Chunks the engine generated, all sessions.");
    put(&b, "flipbook_engine_chunks_total %llu\n", LOAD(m->engine_chunks));
    head(&b, "flipbook_engine_batched_chunks_total", "counter",
         "Chunks whose DiT passes ran in one batched forward with other sessions' chunks.");
    put(&b, "flipbook_engine_batched_chunks_total %llu\n", LOAD(m->engine_batched));
    head(&b, "flipbook_engine_frames_total", "counter", "Frames the engine generated, all sessions.");
    put(&b, "flipbook_engine_frames_total %llu\n", LOAD(m->engine_frames));
    head(&b, "flipbook_engine_errors_total", "counter",
         "Engine failures; each ended the session it happened in.");
    put(&b, "flipbook_engine_errors_total %llu\n", LOAD(m->engine_errors));
    head(&b, "flipbook_engine_starved_frames_total", "counter",
         "Frame slots an engine session skipped because its playback buffer was empty.");
    put(&b, "flipbook_engine_starved_frames_total %llu\n", LOAD(m->frames_starved));
    head(&b, "flipbook_engine_chunk_seconds", "histogram",
         "Engine time of one stream's chunk (a batched call's time divided among its streams).");
    cum = 0;
    for (int i = 0; i < FBD_CHUNK_BUCKETS; i++) {
        cum += LOAD(m->chunk_bucket[i]);
        if (i < FBD_CHUNK_BUCKETS - 1)
            put(&b, "flipbook_engine_chunk_seconds_bucket{le=\"%g\"} %llu\n", chunk_le[i], cum);
        else
            put(&b, "flipbook_engine_chunk_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    }
    put(&b, "flipbook_engine_chunk_seconds_sum %.6f\n", (double)LOAD(m->chunk_ns_sum) * 1e-9);
    put(&b, "flipbook_engine_chunk_seconds_count %llu\n", cum);
    if (v->has_engine) {
        head(&b, "flipbook_engine_capacity_sessions", "gauge",
             "Sessions the engine can serve at full frame rate (from the measured chunk time).");
        put(&b, "flipbook_engine_capacity_sessions %d\n", v->engine_capacity);
        head(&b, "flipbook_engine_kv_streams", "gauge", "Engine streams the KV pool holds.");
        put(&b, "flipbook_engine_kv_streams %d\n", v->engine_kv_streams);
        head(&b, "flipbook_engine_sessions", "gauge", "Engine sessions open (each holds a stream).");
        put(&b, "flipbook_engine_sessions %d\n", v->engine_streams);
        head(&b, "flipbook_engine_chunk_estimate_seconds", "gauge",
             "Running estimate of one stream's chunk time (what admission uses).");
        put(&b, "flipbook_engine_chunk_estimate_seconds %.6f\n", v->engine_chunk_ms / 1000.0);
        head(&b, "flipbook_engine_slowdown", "gauge",
             "Factor by which every session's frame rate is slowed now (1 = full rate).");
        put(&b, "flipbook_engine_slowdown %.3f\n", v->engine_slowdown);
    }

    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
