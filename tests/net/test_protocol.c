/* tests/net/test_protocol.c - flipbook.v1 message parsing, validation, builders, rate limit.
 *
 * Every client message type, every error code the parser produces (with its exact message where
 * clients may rely on it), UTF-8 and size limits, and the JSON the server builds. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "stream/protocol.h"
#include "tests/net/check.h"

static fb_msg m;
static fb_msg_error e;

static int parse(const char *s) {
    fb_msg_clear(&m);
    return fb_msg_parse(s, strlen(s), &m, &e);
}

/* Expects `s` to be refused with `code` (and, if msg is not NULL, exactly that message). */
static void expect_err(const char *s, fb_err code, const char *msg, int line) {
    int rc = parse(s);
    if (rc != -1 || e.code != code || (msg && strcmp(e.message, msg) != 0)) {
        fprintf(stderr, "line %d: %.80s -> rc %d code %s message \"%s\" (want %s%s%s)\n", line, s,
                rc, fb_err_code(e.code), e.message, fb_err_code(code), msg ? ": " : "",
                msg ? msg : "");
        check_failures++;
    }
}
#define ERR(s, code) expect_err(s, code, NULL, __LINE__)
#define ERRM(s, code, msg) expect_err(s, code, msg, __LINE__)

static void test_valid_messages(void) {
    CHECK(parse("{\"type\":\"start\",\"prompt\":\"a cat\",\"seed\":42,\"width\":320,\"height\":240,"
                "\"fps\":25,\"id\":7}") == 0);
    CHECK(m.type == FB_MSG_START);
    CHECK_STR(m.text, "a cat");
    CHECK(m.text_len == 5);
    CHECK(m.has_seed && m.seed == 42);
    CHECK(m.width == 320 && m.height == 240 && m.fps == 25);
    CHECK(m.has_id && m.id == 7);

    CHECK(parse("{\"type\":\"start\",\"prompt\":\"\"}") == 0);
    CHECK(m.type == FB_MSG_START && m.text_len == 0 && !m.has_seed && m.width == 0 && !m.has_id);
    CHECK(parse("{\"prompt\":\"x\",\"type\":\"start\",\"extra\":{\"a\":[1,2]},\"seed\":null}") == 0);
    CHECK(!m.has_seed);  /* null counts as absent; unknown fields are ignored */

    CHECK(parse("{\"type\":\"join\",\"session\":\"0123456789ab\"}") == 0);
    CHECK(m.type == FB_MSG_JOIN && strcmp(m.session, "0123456789ab") == 0 && !m.has_token);
    CHECK(parse("{\"type\":\"join\",\"session\":\"0123456789ab\",\"token\":\"abc\"}") == 0);
    CHECK(m.has_token && strcmp(m.token, "abc") == 0);

    CHECK(parse("{\"type\":\"prompt\",\"text\":\"a dog\"}") == 0);
    CHECK(m.type == FB_MSG_PROMPT && m.transition == FB_MSG_TRANSITION_CUT && m.chunks == 4);
    CHECK(parse("{\"type\":\"prompt\",\"text\":\"x\",\"transition\":\"blend\",\"chunks\":64}") == 0);
    CHECK(m.transition == FB_MSG_TRANSITION_BLEND && m.chunks == 64);
    CHECK(parse("{\"type\":\"prompt\",\"text\":\"x\",\"transition\":\"recache\",\"chunks\":1}") == 0);
    CHECK(m.transition == FB_MSG_TRANSITION_RECACHE && m.chunks == 1);

    CHECK(parse("{\"type\":\"seed\",\"seed\":0}") == 0);
    CHECK(m.type == FB_MSG_SEED && m.has_seed && m.seed == 0);
    CHECK(parse("{\"type\":\"seed\",\"seed\":9007199254740991}") == 0);
    CHECK(m.seed == 9007199254740991ull);

    CHECK(parse("{\"type\":\"pause\"}") == 0 && m.type == FB_MSG_PAUSE);
    CHECK(parse("{\"type\":\"resume\"}") == 0 && m.type == FB_MSG_RESUME);
    CHECK(parse("{\"type\":\"info\",\"id\":3}") == 0 && m.type == FB_MSG_INFO && m.has_id &&
          m.id == 3);
    CHECK(parse("{\"type\":\"reset\"}") == 0 && m.type == FB_MSG_RESET);
    CHECK(parse("{\"type\":\"keyframe\"}") == 0 && m.type == FB_MSG_KEYFRAME);
    CHECK(parse("{\"type\":\"stop\",\"id\":-3}") == 0 && m.type == FB_MSG_STOP && m.id == -3);

    CHECK(parse("{\"type\":\"record\",\"action\":\"start\"}") == 0);
    CHECK(m.type == FB_MSG_RECORD && m.record == FB_RECORD_START);
    CHECK(parse("{\"type\":\"record\",\"action\":\"stop\"}") == 0 && m.record == FB_RECORD_STOP);

    CHECK(parse("{\"type\":\"anchor\",\"action\":\"pin\"}") == 0);
    CHECK(m.type == FB_MSG_ANCHOR && m.anchor == FB_ANCHOR_PIN && !m.anchor_data);
    CHECK(parse("{\"type\":\"anchor\",\"action\":\"clear\"}") == 0 && m.anchor == FB_ANCHOR_CLEAR);
    CHECK(parse("{\"type\":\"anchor\",\"action\":\"image\",\"data\":\"iVBORw0KGgo=\"}") == 0);
    CHECK(m.anchor == FB_ANCHOR_IMAGE && m.anchor_data && strcmp(m.anchor_data, "iVBORw0KGgo=") == 0);

    CHECK(parse("{\"type\":\"stats\"}") == 0);
    CHECK(m.type == FB_MSG_STATS && !m.has_decode_queue && !m.has_client_fps);
    CHECK(parse("{\"type\":\"stats\",\"decodeQueue\":2,\"fps\":29.5,\"dropped\":3}") == 0);
    CHECK(m.has_decode_queue && m.decode_queue == 2 && m.has_client_fps && m.client_fps == 29.5);
    CHECK(m.has_client_dropped && m.client_dropped == 3);

    /* whitespace around the object is fine */
    CHECK(parse("  \n{\"type\":\"pause\"}\r\n ") == 0);
}

static void test_errors(void) {
    /* bad_json */
    ERRM("", FB_ERR_BAD_JSON, "message is not a JSON object");
    ERR("{", FB_ERR_BAD_JSON);
    ERR("[]", FB_ERR_BAD_JSON);
    ERR("[{\"type\":\"pause\"}]", FB_ERR_BAD_JSON);
    ERR("123", FB_ERR_BAD_JSON);
    ERR("\"pause\"", FB_ERR_BAD_JSON);
    ERR("null", FB_ERR_BAD_JSON);
    ERR("{\"type\":\"pause\"} {}", FB_ERR_BAD_JSON);
    ERR("{\"type\":\"pause\",}", FB_ERR_BAD_JSON);
    ERR("{'type':'pause'}", FB_ERR_BAD_JSON);
    ERR("{\"type\":\"prompt\",\"text\":\"\\ud800\"}", FB_ERR_BAD_JSON);  /* lone surrogate */
    {
        const char raw[] = "{\"type\":\"pause\"}\0garbage";
        CHECK(fb_msg_parse(raw, sizeof raw - 1, &m, &e) == -1 && e.code == FB_ERR_BAD_JSON);
    }

    /* bad_message: missing or wrongly typed fields */
    ERRM("{}", FB_ERR_BAD_MESSAGE, "field \"type\" is required");
    ERRM("{\"type\":5}", FB_ERR_BAD_MESSAGE, "field \"type\" must be a string");
    ERR("{\"type\":null}", FB_ERR_BAD_MESSAGE);
    ERRM("{\"type\":\"start\"}", FB_ERR_BAD_MESSAGE, "field \"prompt\" is required");
    ERRM("{\"type\":\"start\",\"prompt\":5}", FB_ERR_BAD_MESSAGE, "field \"prompt\" must be a string");
    ERRM("{\"type\":\"start\",\"prompt\":\"x\",\"seed\":\"1\"}", FB_ERR_BAD_MESSAGE,
         "field \"seed\" must be an integer");
    ERR("{\"type\":\"start\",\"prompt\":\"x\",\"seed\":1.5}", FB_ERR_BAD_MESSAGE);
    ERR("{\"type\":\"start\",\"prompt\":\"x\",\"width\":\"320\"}", FB_ERR_BAD_MESSAGE);
    ERR("{\"type\":\"start\",\"prompt\":\"x\",\"fps\":true}", FB_ERR_BAD_MESSAGE);
    ERRM("{\"type\":\"join\"}", FB_ERR_BAD_MESSAGE, "field \"session\" is required");
    ERR("{\"type\":\"join\",\"session\":12}", FB_ERR_BAD_MESSAGE);
    ERR("{\"type\":\"join\",\"session\":\"a\",\"token\":1}", FB_ERR_BAD_MESSAGE);
    ERRM("{\"type\":\"prompt\"}", FB_ERR_BAD_MESSAGE, "field \"text\" is required");
    ERR("{\"type\":\"prompt\",\"text\":[\"x\"]}", FB_ERR_BAD_MESSAGE);
    ERR("{\"type\":\"prompt\",\"text\":\"x\",\"transition\":1}", FB_ERR_BAD_MESSAGE);
    ERR("{\"type\":\"prompt\",\"text\":\"x\",\"chunks\":\"4\"}", FB_ERR_BAD_MESSAGE);
    ERRM("{\"type\":\"seed\"}", FB_ERR_BAD_MESSAGE, "field \"seed\" is required");
    ERRM("{\"type\":\"record\"}", FB_ERR_BAD_MESSAGE, "field \"action\" is required");
    ERR("{\"type\":\"anchor\"}", FB_ERR_BAD_MESSAGE);
    ERRM("{\"type\":\"anchor\",\"action\":\"image\"}", FB_ERR_BAD_MESSAGE,
         "field \"data\" is required");
    ERRM("{\"type\":\"stats\",\"fps\":\"x\"}", FB_ERR_BAD_MESSAGE, "field \"fps\" must be a number");
    ERRM("{\"type\":\"pause\",\"id\":\"7\"}", FB_ERR_BAD_MESSAGE, "field \"id\" must be an integer");
    ERR("{\"type\":\"pause\",\"id\":1.25}", FB_ERR_BAD_MESSAGE);

    /* bad_value: right type, unacceptable value */
    ERRM("{\"type\":\"seed\",\"seed\":-1}", FB_ERR_BAD_VALUE,
         "field \"seed\" must be between 0 and 9007199254740991");
    ERR("{\"type\":\"seed\",\"seed\":9007199254740992}", FB_ERR_BAD_VALUE);
    ERR("{\"type\":\"seed\",\"seed\":1e300}", FB_ERR_BAD_VALUE);
    ERRM("{\"type\":\"start\",\"prompt\":\"x\",\"width\":8}", FB_ERR_BAD_VALUE,
         "field \"width\" must be between 16 and 4096");
    ERRM("{\"type\":\"start\",\"prompt\":\"x\",\"width\":17}", FB_ERR_BAD_VALUE,
         "field \"width\" must be even");
    ERR("{\"type\":\"start\",\"prompt\":\"x\",\"height\":4098}", FB_ERR_BAD_VALUE);
    ERR("{\"type\":\"start\",\"prompt\":\"x\",\"fps\":0}", FB_ERR_BAD_VALUE);
    ERR("{\"type\":\"start\",\"prompt\":\"x\",\"fps\":121}", FB_ERR_BAD_VALUE);
    ERRM("{\"type\":\"prompt\",\"text\":\"x\",\"transition\":\"fade\"}", FB_ERR_BAD_VALUE,
         "field \"transition\" must be one of: cut, recache, blend");
    ERR("{\"type\":\"prompt\",\"text\":\"x\",\"chunks\":0}", FB_ERR_BAD_VALUE);
    ERR("{\"type\":\"prompt\",\"text\":\"x\",\"chunks\":65}", FB_ERR_BAD_VALUE);
    ERRM("{\"type\":\"record\",\"action\":\"pause\"}", FB_ERR_BAD_VALUE,
         "field \"action\" must be one of: start, stop");
    ERR("{\"type\":\"anchor\",\"action\":\"drop\"}", FB_ERR_BAD_VALUE);
    ERRM("{\"type\":\"anchor\",\"action\":\"image\",\"data\":\"not base64!\"}", FB_ERR_BAD_VALUE,
         "field \"data\" must be base64");
    ERR("{\"type\":\"anchor\",\"action\":\"image\",\"data\":\"\"}", FB_ERR_BAD_VALUE);
    ERR("{\"type\":\"anchor\",\"action\":\"image\",\"data\":\"ab=c\"}", FB_ERR_BAD_VALUE);
    ERRM("{\"type\":\"stats\",\"decodeQueue\":-1}", FB_ERR_BAD_VALUE,
         "field \"decodeQueue\" must be a non-negative number");
    ERRM("{\"type\":\"prompt\",\"text\":\"a\\u0000b\"}", FB_ERR_BAD_VALUE,
         "strings may not contain \\u0000");
    CHECK(parse("{\"type\":\"prompt\",\"text\":\"a\\\\u0000b\"}") == 0);  /* escaped backslash */
    CHECK_STR(m.text, "a\\u0000b");
    {
        char s[200];
        memset(s, 0, sizeof s);
        strcpy(s, "{\"type\":\"join\",\"session\":\"");
        memset(s + strlen(s), 'a', 65);
        strcat(s, "\"}");
        ERRM(s, FB_ERR_BAD_VALUE, "field \"session\" is longer than 64 characters");
    }

    /* unknown_type, with a printable excerpt of the name */
    ERRM("{\"type\":\"dance\"}", FB_ERR_UNKNOWN_TYPE, "unknown message type \"dance\"");
    ERRM("{\"type\":\"a\\\"b\\n\"}", FB_ERR_UNKNOWN_TYPE, "unknown message type \"a?b?\"");
    ERR("{\"type\":\"START\"}", FB_ERR_UNKNOWN_TYPE);

    /* the id of a refused message is echoed when it is valid */
    ERR("{\"type\":\"seed\",\"seed\":-5,\"id\":99}", FB_ERR_BAD_VALUE);
    CHECK(e.has_id && e.id == 99);
    ERR("{\"type\":\"dance\",\"id\":3}", FB_ERR_UNKNOWN_TYPE);
    CHECK(e.has_id && e.id == 3);
    ERR("{\"type\":\"pause\",\"id\":\"x\"}", FB_ERR_BAD_MESSAGE);
    CHECK(!e.has_id);
}

static void test_sizes_and_utf8(void) {
    /* too_large */
    size_t big = FB_PROTO_MAX_MESSAGE + 1;
    char *s = malloc(big + 1);
    memset(s, ' ', big);
    s[big] = '\0';
    memcpy(s, "{\"type\":\"pause\"}", 16);
    CHECK(fb_msg_parse(s, big, &m, &e) == -1 && e.code == FB_ERR_TOO_LARGE);
    CHECK_STR(e.message, "message is larger than 65536 bytes");
    CHECK(fb_msg_parse(s, big - 1, &m, &e) == 0 && m.type == FB_MSG_PAUSE);  /* exactly 64 KiB */
    free(s);

    /* prompt: 2000 bytes OK, 2001 refused; counted in bytes after JSON unescaping */
    char buf[8000];
    for (int n = 1999; n <= 2001; n++) {
        int k = snprintf(buf, sizeof buf, "{\"type\":\"prompt\",\"text\":\"");
        memset(buf + k, 'x', (size_t)n);
        strcpy(buf + k + n, "\"}");
        int rc = parse(buf);
        if (n <= 2000) CHECK(rc == 0 && m.text_len == (size_t)n);
        else {
            CHECK(rc == -1 && e.code == FB_ERR_BAD_VALUE);
            CHECK_STR(e.message, "field \"text\" is longer than 2000 bytes");
        }
    }
    /* 500 four-byte characters = 2000 bytes: allowed; one more two-byte character: refused */
    {
        int k = snprintf(buf, sizeof buf, "{\"type\":\"start\",\"prompt\":\"");
        for (int i = 0; i < 500; i++) { memcpy(buf + k, "\xf0\x9f\x98\x80", 4); k += 4; }
        strcpy(buf + k, "\"}");
        CHECK(parse(buf) == 0 && m.text_len == 2000);
        memcpy(buf + k, "\xc3\xa9\"}", 5);
        CHECK(parse(buf) == -1 && e.code == FB_ERR_BAD_VALUE);
    }
    /* escapes decode to UTF-8 */
    CHECK(parse("{\"type\":\"prompt\",\"text\":\"caf\\u00e9 \\ud83d\\ude00\"}") == 0);
    CHECK_STR(m.text, "caf\xc3\xa9 \xf0\x9f\x98\x80");

    /* invalid UTF-8 inside the JSON string -> bad_value */
    static const char *const bad[] = {
        "\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc3",
        "\xe2\x82", "\x80", "\xf8\x88\x80\x80\x80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(buf, sizeof buf, "{\"type\":\"prompt\",\"text\":\"a%sb\"}", bad[i]);
        CHECK(parse(buf) == -1 && e.code == FB_ERR_BAD_VALUE);
        CHECK_STR(e.message, "field \"text\" is not valid UTF-8");
    }

    /* the validator itself */
    CHECK(fb_utf8_valid("", 0));
    CHECK(fb_utf8_valid("plain ascii", 11));
    CHECK(fb_utf8_valid("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 18));
    CHECK(!fb_utf8_valid("\xc1\xbf", 2));       /* overlong */
    CHECK(!fb_utf8_valid("\xed\xbf\xbf", 3));   /* surrogate */
    CHECK(!fb_utf8_valid("\xf0\x8f\xbf\xbf", 4)); /* overlong 4-byte */
    CHECK(!fb_utf8_valid("\xf5\x80\x80\x80", 4));
    CHECK(!fb_utf8_valid("\xe0\xa0", 2));       /* truncated */
    CHECK(!fb_utf8_valid("a\xe0\xa0\x41", 4));  /* bad continuation */
}

static cJSON *j;
static const cJSON *field(const char *name) {
    return cJSON_GetObjectItemCaseSensitive(j, name);
}
static void load(char *s) {
    cJSON_Delete(j);
    j = s ? cJSON_Parse(s) : NULL;
    CHECK(j != NULL);
    fb_proto_free(s);
}
static int str_is(const char *name, const char *want) {
    const cJSON *v = field(name);
    return v && cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}
static int num_is(const char *name, double want) {
    const cJSON *v = field(name);
    return v && cJSON_IsNumber(v) && v->valuedouble == want;
}

static void test_builders(void) {
    load(fb_proto_hello("0123456789ab", 1, "tok", "flipbookd/0.1.0"));
    CHECK(str_is("type", "hello") && str_is("session", "0123456789ab") && str_is("role", "owner"));
    CHECK(str_is("token", "tok") && str_is("viewer", "/?session=0123456789ab"));
    CHECK(str_is("server", "flipbookd/0.1.0"));
    load(fb_proto_hello("0123456789ab", 0, "tok", "s"));
    CHECK(str_is("role", "viewer") && field("token") == NULL);

    load(fb_proto_config(832, 480, 30));
    CHECK(str_is("type", "config") && str_is("codec", "vp09.00.31.08"));
    CHECK(num_is("width", 832) && num_is("height", 480) && num_is("fps", 30));
    const cJSON *cs = field("colorSpace");
    CHECK(cs && cJSON_IsObject(cs));
    if (cs) {
        const char *keys[] = {"primaries", "transfer", "matrix"};
        for (int i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cs, keys[i]);
            CHECK(v && cJSON_IsString(v) && strcmp(v->valuestring, "bt709") == 0);
        }
        CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cs, "fullRange")));
    }

    const char *words[] = {"zxq", "blorp"};
    fb_ack a = {.of = "prompt", .has_id = 1, .id = 12, .has_frame = 1, .frame = 345,
                .transition = "cut", .unknown_words = words, .n_unknown_words = 2};
    load(fb_proto_ack(&a));
    CHECK(str_is("type", "ack") && str_is("of", "prompt") && num_is("id", 12) && num_is("frame", 345));
    CHECK(str_is("transition", "cut"));
    const cJSON *uw = field("unknownWords");
    CHECK(uw && cJSON_IsArray(uw) && cJSON_GetArraySize(uw) == 2);
    fb_ack b = {.of = "pause"};
    load(fb_proto_ack(&b));
    CHECK(str_is("of", "pause") && !field("id") && !field("frame") && !field("unknownWords"));
    fb_ack c = {.of = "seed", .has_seed = 1, .seed = 9007199254740991ull};
    load(fb_proto_ack(&c));
    CHECK(num_is("seed", 9007199254740991.0));

    fb_stats_msg st = {.frame = 100, .fps = 29.9712, .sent_fps = 30, .bitrate_kbps = 987.654,
                       .encode_ms = 3.14159, .queue = 2, .dropped = 5, .viewers = 3,
                       .recording = 1, .paused = 0};
    load(fb_proto_stats(&st));
    CHECK(str_is("type", "stats") && num_is("frame", 100) && num_is("fps", 29.97));
    CHECK(num_is("sentFps", 30) && num_is("bitrateKbps", 987.65) && num_is("encodeMs", 3.14));
    CHECK(num_is("queue", 2) && num_is("dropped", 5) && num_is("viewers", 3));
    CHECK(cJSON_IsTrue(field("recording")) && cJSON_IsFalse(field("paused")));

    load(fb_proto_recording("stopped", "abc.webm", "/recordings/abc.webm", 12345, NULL));
    CHECK(str_is("type", "recording") && str_is("state", "stopped") && str_is("name", "abc.webm"));
    CHECK(str_is("url", "/recordings/abc.webm") && num_is("bytes", 12345) && !field("message"));
    load(fb_proto_recording("failed", NULL, NULL, 0, "disk full"));
    CHECK(str_is("state", "failed") && str_is("message", "disk full") && !field("name"));

    load(fb_proto_error(FB_ERR_NOT_OWNER, "viewers cannot steer", 1, 5, 0));
    CHECK(str_is("type", "error") && str_is("code", "not_owner") && num_is("id", 5));
    CHECK(str_is("message", "viewers cannot steer") && !field("fatal"));
    load(fb_proto_error(FB_ERR_INTERNAL, "boom", 0, 0, 1));
    CHECK(!field("id") && cJSON_IsTrue(field("fatal")));
    /* messages with characters JSON must escape survive */
    load(fb_proto_error(FB_ERR_BAD_VALUE, "quote \" backslash \\ newline \n", 0, 0, 0));
    CHECK(str_is("message", "quote \" backslash \\ newline \n"));

    load(fb_proto_end("shutdown"));
    CHECK(str_is("type", "end") && str_is("reason", "shutdown"));
    cJSON_Delete(j);
    j = NULL;

    /* names */
    static const char *const codes[] = {"bad_json", "bad_message", "bad_value", "unknown_type",
        "too_large", "rate_limited", "binary_not_allowed", "no_session", "already_in_session",
        "bad_token", "not_owner", "session_limit", "unsupported", "record_failed", "internal"};
    for (int i = 1; i < FB_ERR_COUNT; i++) CHECK_STR(fb_err_code((fb_err)i), codes[i - 1]);
    CHECK_STR(fb_err_code((fb_err)999), "internal");
    static const char *const types[] = {"start", "join", "prompt", "seed", "pause", "resume",
        "record", "anchor", "reset", "keyframe", "stop", "stats", "info"};
    for (int i = 0; i < FB_MSG_COUNT; i++) {
        CHECK_STR(fb_msg_type_name((fb_msg_type)i), types[i]);
        int owner_only = i == FB_MSG_PROMPT || i == FB_MSG_SEED || i == FB_MSG_PAUSE ||
                         i == FB_MSG_RESUME || i == FB_MSG_RECORD || i == FB_MSG_ANCHOR ||
                         i == FB_MSG_RESET || i == FB_MSG_STOP;
        CHECK(fb_msg_needs_owner((fb_msg_type)i) == owner_only);
    }
}

static void test_rate(void) {
    fb_rate r;
    fb_rate_init(&r, FB_PROTO_RATE_PER_SEC, FB_PROTO_RATE_BURST, 1000000);
    int passed = 0;
    for (int i = 0; i < 100; i++) passed += fb_rate_take(&r, 1000000);
    CHECK(passed == 40);                           /* the burst */
    CHECK(!fb_rate_take(&r, 1000000 + 40000));    /* 40 ms: 0.8 token */
    CHECK(fb_rate_take(&r, 1000000 + 50000));      /* 50 ms: one token */
    CHECK(!fb_rate_take(&r, 1000000 + 50000));
    /* a second of steady traffic at 20/s passes entirely */
    int ok = 0;
    for (int i = 1; i <= 20; i++) ok += fb_rate_take(&r, 1050000 + i * 50000);
    CHECK(ok == 20);
    /* a long pause refills to the burst, not beyond */
    passed = 0;
    for (int i = 0; i < 100; i++) passed += fb_rate_take(&r, 100000000);
    CHECK(passed == 40);
    /* a clock that goes backwards adds nothing */
    CHECK(!fb_rate_take(&r, 50));
}

int main(void) {
    test_valid_messages();
    test_errors();
    test_sizes_and_utf8();
    test_builders();
    test_rate();
    fb_msg_clear(&m);
    return check_exit("net_protocol");
}
