/* tests/fuzz/fuzz_protocol.c - fuzz target for the flipbook.v1 client-message parser.
 *
 * Any bytes go to fb_msg_parse(). It must return 0 or -1 without crashing, leaking or reading
 * out of bounds, and what it promises must hold: an accepted message has a known type and its
 * strings are valid UTF-8 within the limits; a refused one has an error code of the table and a
 * NUL-terminated message. Accepted fields are then fed to the builders, whose output must parse
 * back as JSON. The UTF-8 validator and the rate limiter get the raw bytes too. */
#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream/protocol.h"

#define REQUIRE(x) do { if (!(x)) abort(); } while (0)

static void must_parse(char *json) {
    if (!json) return;  /* out of memory only */
    cJSON *o = cJSON_Parse(json);
    REQUIRE(o != NULL);
    cJSON_Delete(o);
    fb_proto_free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fb_msg m;
    fb_msg_error e;
    int rc = fb_msg_parse((const char *)data, size, &m, &e);
    if (rc == 0) {
        REQUIRE((unsigned)m.type < FB_MSG_COUNT);
        if (m.text) {
            REQUIRE(m.text_len == strlen(m.text));
            REQUIRE(m.text_len <= FB_PROTO_MAX_PROMPT);
            REQUIRE(fb_utf8_valid(m.text, m.text_len));
        }
        REQUIRE(strlen(m.session) <= FB_PROTO_MAX_ID_LEN && strlen(m.token) <= FB_PROTO_MAX_ID_LEN);
        REQUIRE(m.seed <= (uint64_t)FB_PROTO_MAX_SEED);
        REQUIRE(m.width == 0 || (m.width >= FB_PROTO_MIN_SIZE && m.width <= FB_PROTO_MAX_SIZE));
        REQUIRE(m.fps >= 0 && m.fps <= FB_PROTO_MAX_FPS);
        if (m.type == FB_MSG_PROMPT) REQUIRE(m.chunks >= 1 && m.chunks <= 64);

        fb_ack a = {.of = fb_msg_type_name(m.type), .has_id = m.has_id, .id = m.id,
                    .has_frame = 1, .frame = (int64_t)m.seed, .has_seed = m.has_seed,
                    .seed = m.seed, .transition = fb_msg_transition_name(m.transition)};
        const char *words[1] = {m.text ? m.text : ""};
        a.unknown_words = words;
        a.n_unknown_words = 1;
        must_parse(fb_proto_ack(&a));
        must_parse(fb_proto_hello(m.session, m.has_token, m.token, m.text));
        must_parse(fb_proto_end(m.text));
        must_parse(fb_proto_recording("failed", m.session, m.token, m.seed, m.text));
        must_parse(fb_proto_config(m.width, m.height, m.fps));
        fb_stats_msg st = {.frame = m.id, .fps = m.client_fps, .sent_fps = m.decode_queue,
                           .bitrate_kbps = m.client_dropped, .queue = m.width};
        must_parse(fb_proto_stats(&st));
        fb_msg_clear(&m);
    } else {
        REQUIRE(rc == -1);
        REQUIRE(e.code > FB_ERR_NONE && e.code < FB_ERR_COUNT);
        REQUIRE(memchr(e.message, '\0', sizeof e.message) != NULL);
        REQUIRE(m.text == NULL && m.anchor_data == NULL);
        must_parse(fb_proto_error(e.code, e.message, e.has_id, e.id, 0));
    }
    (void)fb_utf8_valid(data, size);
    fb_rate r;
    fb_rate_init(&r, 20, 40, 0);
    int64_t t = 0;
    for (size_t i = 0; i < size && i < 64; i++) {
        t += (int64_t)data[i] * 1000;
        (void)fb_rate_take(&r, t);
    }
    return 0;
}
