/* tests/stream/test_webm_ffmpeg.c - our WebM files as ffmpeg sees them (integration).
 *
 * 60 test-pattern frames at 256x256 are encoded with fb_vp9enc and recorded with fb_recorder.
 * ffprobe must see VP9, the size, the BT.709 tags, 60 frames with increasing timestamps and
 * keyframes where we put them; `ffmpeg -v error ... -f null -` must print nothing; the decoded
 * frames must carry the counters 0..59 in order, and a seek must land on the right frame. Then
 * the live form is cut at several points (as a crash would leave it) and a recording is ended
 * with SIGKILL: ffmpeg must still decode every complete frame, in order.
 *
 * Exits 77 (skipped) when ffmpeg or ffprobe is missing. */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stream/recorder.h"
#include "stream/testpattern.h"
#include "stream/vp9enc.h"
#include "stream/webm.h"
#include "tests/stream/ebml_check.h"
#include "tests/stream/media_test.h"

enum { W = 256, H = 256, FPS = 30, N = 60, KEY_INTERVAL = 20 };

static fb_packet *packets[N];
static char dir[256];

/* Runs a shell command, capturing stdout and stderr; returns its exit status. */
static int run_capture(const char *cmd, char *out, size_t cap) {
    char full[1024];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    if (cap) {
        n = fread(out, 1, cap - 1, p);
        out[n] = 0;
    }
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Decodes `path` to RGB24 with ffmpeg (`args` go before -i) and reads each frame's counter into
 * counters[]; returns the number of frames decoded. */
static int decode_counters(const char *path, const char *args, int32_t *counters, int max) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -nostdin -v quiet %s -i '%s' -f rawvideo -pix_fmt rgb24 - 2>/dev/null", args,
             path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    static uint8_t rgb[W * H * 3];
    int n = 0;
    while (fread(rgb, 1, sizeof rgb, p) == sizeof rgb) {
        if (n < max) counters[n] = fb_testpattern_read_counter(rgb, W, H);
        n++;
    }
    pclose(p);
    return n;
}

static const char *field(const char *text, const char *key, char *val, size_t cap) {
    const char *p = strstr(text, key);
    val[0] = 0;
    if (!p) return val;
    p += strlen(key);
    size_t i = 0;
    while (*p && *p != '\n' && *p != '\r' && i + 1 < cap) val[i++] = *p++;
    val[i] = 0;
    return val;
}

static int encode_packets(void) {
    fb_vp9enc_params p = fb_vp9enc_default_params(W, H, FPS);
    p.keyframe_interval = KEY_INTERVAL;
    fb_vp9enc *enc;
    char err[256];
    if (fb_vp9enc_new(&p, &enc, err, sizeof err) != FB_VP9ENC_OK) {
        fprintf(stderr, "encoder: %s\n", err);
        return -1;
    }
    static uint8_t rgb[W * H * 3];
    for (int i = 0; i < N; i++) {
        fb_testpattern_draw(rgb, W, H, (uint32_t)i, FPS);
        if (fb_vp9enc_encode_rgb(enc, rgb, 3 * W, FB_VP9ENC_PTS_AUTO, &packets[i]) != FB_VP9ENC_OK ||
            !packets[i]) {
            fb_vp9enc_free(enc);
            return -1;
        }
    }
    fb_vp9enc_free(enc);
    return 0;
}

static void test_recorded_file(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/full.webm", dir);
    fb_recorder *rec;
    char err[256];
    CHECKF(fb_recorder_open(path, W, H, FPS, NULL, &rec, err, sizeof err) == FB_RECORDER_OK, "%s",
           err);
    if (!rec) return;
    for (int i = 0; i < N; i++) CHECK(fb_recorder_push(rec, packets[i]) == FB_RECORDER_OK);
    uint64_t bytes = 0;
    CHECKF(fb_recorder_close(rec, &bytes, err, sizeof err) == FB_RECORDER_OK, "%s", err);
    CHECK(bytes > 1000);

    char out[8192], cmd[1024], v[64];
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
             "stream=codec_name,width,height,nb_read_frames,color_space,color_range:"
             "format=duration -of default=noprint_wrappers=1 '%s'",
             path);
    CHECK(run_capture(cmd, out, sizeof out) == 0);
    CHECKF(strcmp(field(out, "codec_name=", v, sizeof v), "vp9") == 0, "codec %s", v);
    CHECKF(strcmp(field(out, "width=", v, sizeof v), "256") == 0, "width %s", v);
    CHECKF(strcmp(field(out, "height=", v, sizeof v), "256") == 0, "height %s", v);
    CHECKF(atoi(field(out, "nb_read_frames=", v, sizeof v)) == N, "frames %s", v);
    CHECKF(strcmp(field(out, "color_space=", v, sizeof v), "bt709") == 0, "colour space %s", v);
    CHECKF(strcmp(field(out, "color_range=", v, sizeof v), "tv") == 0, "colour range %s", v);
    double duration = atof(field(out, "duration=", v, sizeof v));
    CHECKF(duration > 1.95 && duration < 2.05, "duration %s", v);

    /* Packet timestamps increase; keyframes where the encoder made them. */
    static char pk[65536];
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -select_streams v:0 -show_entries packet=pts_time,flags "
             "-of csv=p=0 '%s'",
             path);
    CHECK(run_capture(cmd, pk, sizeof pk) == 0);
    int n = 0;
    double last = -1;
    for (char *line = strtok(pk, "\n"); line; line = strtok(NULL, "\n"), n++) {
        double t = atof(line);
        const char *comma = strchr(line, ',');
        int key = comma && comma[1] == 'K';
        CHECKF(t > last, "packet %d at %f after %f", n, t, last);
        CHECKF(key == (n % KEY_INTERVAL == 0), "packet %d key flag %d", n, key);
        last = t;
    }
    CHECK(n == N);

    /* A clean decode prints nothing at all. */
    snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -v error -i '%s' -f null -", path);
    CHECK(run_capture(cmd, out, sizeof out) == 0);
    CHECKF(out[0] == 0, "ffmpeg printed: %s", out);

    int32_t counters[N + 8];
    int frames = decode_counters(path, "", counters, N + 8);
    CHECKF(frames == N, "%d frames decoded", frames);
    for (int i = 0; i < frames && i < N; i++)
        CHECKF(counters[i] == i, "decoded frame %d shows counter %d", i, counters[i]);

    /* Seeking through the Cues: 1.0 s is frame 30 (decoded from the keyframe at 20). */
    frames = decode_counters(path, "-ss 1.0", counters, 1);
    CHECKF(frames > 0 && counters[0] == 30, "seek to 1.0 s shows counter %d",
           frames > 0 ? counters[0] : -1);
}

/* The live form cut at several points, as a crash leaves it. */
static void test_cut_live_file(void) {
    mem_sink ms = {0};
    fb_webm_sink sink = mem_sink_make(&ms);
    fb_webm_params wp = {W, H, FPS};
    fb_webm *m = NULL;
    CHECK(fb_webm_open(&sink, &wp, &m) == FB_WEBM_OK);
    for (int i = 0; m && i < N; i++) CHECK(fb_webm_write_packet(m, packets[i]) == FB_WEBM_OK);
    fb_webm_free(m); /* never finalized */
    webm_summary s;
    char err[256];
    CHECKF(webm_check(ms.data, ms.len, 0, &s, err, sizeof err) == 0, "%s", err);
    if (s.n_frames != N) {
        webm_summary_free(&s);
        mem_sink_free(&ms);
        CHECK(!"live file incomplete");
        return;
    }
    /* After frame 0; inside frame 7; just after the second cluster's header; mid-file; one
     * byte short; whole. */
    uint64_t cuts[] = {s.frames[0].end_at,
                       s.frames[7].data_at + s.frames[7].size / 2,
                       s.frames[KEY_INTERVAL].block_at,
                       ms.len / 2,
                       s.frames[45].end_at + 3,
                       ms.len - 1,
                       ms.len};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        int complete = 0;
        while (complete < N && s.frames[complete].end_at <= cuts[c]) complete++;
        char path[512];
        snprintf(path, sizeof path, "%s/cut%zu.webm", dir, c);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(ms.data, 1, (size_t)cuts[c], f) == cuts[c]);
        if (f) fclose(f);
        int32_t counters[N + 8];
        int frames = decode_counters(path, "", counters, N + 8);
        /* Every complete frame decodes; a partial last one may or may not. */
        CHECKF(frames >= complete && frames <= complete + 1,
               "cut %zu at %llu: %d frames decoded, %d complete", c,
               (unsigned long long)cuts[c], frames, complete);
        for (int i = 0; i < complete && i < frames; i++)
            CHECKF(counters[i] == i, "cut %zu: frame %d shows counter %d", c, i, counters[i]);
        printf("live file cut at %llu of %zu bytes: %d frames decoded, %d complete\n",
               (unsigned long long)cuts[c], ms.len, frames, complete);
    }
    webm_summary_free(&s);
    mem_sink_free(&ms);
}

/* A recording process killed with SIGKILL leaves a file ffmpeg decodes up to the last frame. */
static void test_sigkill(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/killed.webm", dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        fb_recorder *rec;
        if (fb_recorder_open(path, W, H, FPS, NULL, &rec, NULL, 0) != FB_RECORDER_OK) _exit(2);
        for (int i = 0; i < 45; i++) {
            fb_recorder_push(rec, packets[i]);
            if (i % 10 == 0) usleep(2000);
        }
        usleep(300000); /* let the writer thread put everything on disk */
        kill(getpid(), SIGKILL);
        _exit(3);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECKF(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child status %d", st);
    int32_t counters[N];
    int frames = decode_counters(path, "", counters, N);
    CHECKF(frames == 45, "%d frames decoded after SIGKILL", frames);
    for (int i = 0; i < frames && i < 45; i++)
        CHECKF(counters[i] == i, "frame %d shows counter %d", i, counters[i]);
}

static void remove_dir(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    if (system("ffprobe -version >/dev/null 2>&1") != 0 ||
        system("ffmpeg -version >/dev/null 2>&1") != 0) {
        printf("ffmpeg/ffprobe not found: skipped\n");
        return 77;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/fb_webm_ffmpeg_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (encode_packets() != 0) {
        fprintf(stderr, "encoding failed\n");
        remove_dir();
        return 1;
    }
    test_recorded_file();
    test_cut_live_file();
    test_sigkill();
    for (int i = 0; i < N; i++) fb_packet_unref(packets[i]);
    if (test_failures) fprintf(stderr, "files kept in %s\n", dir);
    else remove_dir();
    return test_result("stream_webm_ffmpeg");
}
