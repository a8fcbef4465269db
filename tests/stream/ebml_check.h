/* tests/stream/ebml_check.h - an independent EBML/WebM reader that checks files written by
 * stream/webm.c.
 *
 * It shares no code with the muxer: it parses the bytes back and checks the structure the muxer
 * promises (webm.h): EBML header and DocType, Segment size (patched or unknown), SeekHead entries
 * pointing at the elements they name, Info (1 ms ticks, Duration), one VP9 track with size and
 * BT.709 limited Colour, Clusters (every keyframe first in its cluster, every cluster but the
 * last with a known size, relative times in range, non-decreasing times), and Cues pointing at
 * the keyframe clusters and blocks. Used by the unit tests and by the fuzz target.
 *
 * Thread-safety: pure functions over the caller's buffer.
 */
#ifndef FLIPBOOK_TESTS_STREAM_EBML_CHECK_H
#define FLIPBOOK_TESTS_STREAM_EBML_CHECK_H

#include <stddef.h>
#include <stdint.h>

typedef struct webm_frame_info {
    uint64_t block_at;    /* file offset of the SimpleBlock element */
    uint64_t data_at;     /* file offset of the frame bytes */
    uint64_t end_at;      /* file offset just after the element */
    size_t size;          /* frame bytes */
    uint64_t time_ms;     /* cluster timecode + relative time */
    int is_key;
    int first_in_cluster;
} webm_frame_info;

typedef struct webm_summary {
    int finalized;              /* Segment size known (and then checked against the file) */
    int truncated;              /* the data stops inside an element (a file cut off) */
    int width, height;
    uint64_t default_duration_ns;
    int has_duration;
    double duration_ms;
    int has_seekhead;
    size_t n_clusters, n_cues, n_frames, n_keyframes;
    webm_frame_info *frames;    /* n_frames entries; free with webm_summary_free() */
} webm_summary;

/* Parses and checks `len` bytes. With allow_truncated, data that ends inside an element is
 * accepted (the incomplete element is ignored); otherwise it is an error. Returns 0, or -1 with
 * a message in err. `out` is always initialised (free it either way). */
int webm_check(const uint8_t *buf, size_t len, int allow_truncated, webm_summary *out, char *err,
               size_t err_size);

void webm_summary_free(webm_summary *s);

#endif
