/* Sampler: the schedule against shared/specs/wan_causal.md 5.1 (Self-Forcing / LongLive and
 * CausVid rows), the per-chunk state machine with a stand-in DiT, and - when the upstream
 * dump is present - the step arithmetic bit for bit against Self-Forcing's own pipeline
 * (x0 = x - sigma*v in double; (1-sigma)*x0 + sigma*eps in float).
 *
 * usage: test_engine_sampler [UPSTREAM_GOLDEN_DIR]
 */
#include <stdint.h>

#include "engine/safetensors.h"
#include "engine/sampler.h"
#include "tests/engine/test_util.h"

static fb_sampler_config sampler_cfg(float shift, int warp, int n, const float *steps)
{
    fb_sampler_config c;
    memset(&c, 0, sizeof c);
    c.num_train_timesteps = 1000;
    c.shift = shift;
    c.warp = warp;
    c.guidance = 1.0f;
    c.n_steps = n;
    for (int i = 0; i < n; i++)
        c.steps[i] = steps[i];
    return c;
}

static void check_row(float shift, int warp, int n, const float *steps, const float *want_t,
                      const float *want_sigma, double tol_t, double tol_s)
{
    fb_sampler_config c = sampler_cfg(shift, warp, n, steps);
    fb_schedule s;
    char err[256];
    CHECK(fb_schedule_init(&s, &c, err, sizeof err) == 0);
    CHECK(s.n_steps == n);
    for (int i = 0; i < n; i++) {
        CHECK_NEAR(s.timesteps[i], want_t[i], tol_t);
        CHECK_NEAR(s.sigmas[i], want_sigma[i], tol_s);
    }
    CHECK(s.context_t == 0.0f && s.context_sigma == 0.0f);
}

/* Stand-in DiT for the state machine: v = x / 2 + chunk, and a log of the calls. */
typedef struct {
    int n_calls;
    fb_call_kind kinds[16];
    float ts[16];
} call_log;

static void noise_const(void *ctx, uint64_t seed, uint64_t chunk, unsigned draw, float *out,
                        size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(seed % 7) + (float)chunk * 0.5f + (float)draw * 0.25f + (float)i;
}

static void test_state_machine(void)
{
    static const float steps[] = {1000, 750, 500, 250};
    fb_sampler_config c = sampler_cfg(5.0f, 1, 4, steps);
    fb_schedule s;
    char err[128];
    CHECK(fb_schedule_init(&s, &c, err, sizeof err) == 0);
    enum { N = 6 };
    float x[N], x0[N], v[N], ref_x[N], ref_x0[N], eps[N];
    fb_chunk_sampler cs;
    fb_chunk_sampler_begin(&cs, &s, 3, 2, x, x0, v, NULL, N, noise_const, NULL);
    noise_const(NULL, 3, 2, 0, ref_x, N);
    CHECK(memcmp(x, ref_x, sizeof x) == 0);
    call_log log = {0};
    for (;;) {
        float t;
        const float *in;
        fb_call_kind k = fb_chunk_sampler_next(&cs, &t, &in);
        if (k == FB_CALL_DONE)
            break;
        CHECK(log.n_calls < 16);
        if (log.n_calls >= 16)
            break;
        log.kinds[log.n_calls] = k;
        log.ts[log.n_calls] = t;
        log.n_calls++;
        CHECK(k != FB_CALL_UNCOND);   /* guidance 1: never asked for */
        if (k == FB_CALL_DENOISE) {
            CHECK(in == x);
            int step = cs.step;
            for (int i = 0; i < N; i++)
                v[i] = in[i] * 0.5f + 2.0f;
            /* the reference arithmetic, written out */
            for (int i = 0; i < N; i++)
                ref_x0[i] = (float)((double)ref_x[i] - (double)s.sigmas[step] * (double)v[i]);
            if (step + 1 < s.n_steps) {
                noise_const(NULL, 3, 2, (unsigned)(step + 1), eps, N);
                for (int i = 0; i < N; i++) {
                    float a = (1.0f - s.sigmas[step + 1]) * ref_x0[i];
                    float b = s.sigmas[step + 1] * eps[i];
                    ref_x[i] = a + b;
                }
            }
        } else {
            CHECK(in == x0);
        }
        fb_chunk_sampler_advance(&cs);
        if (k == FB_CALL_DENOISE) {
            CHECK(memcmp(x0, ref_x0, sizeof x0) == 0);
            if (cs.step < s.n_steps)
                CHECK(memcmp(x, ref_x, sizeof x) == 0);
        }
    }
    CHECK(log.n_calls == 5);
    for (int i = 0; i < 4; i++)
        CHECK(log.kinds[i] == FB_CALL_DENOISE && log.ts[i] == s.timesteps[i]);
    CHECK(log.kinds[4] == FB_CALL_CONTEXT && log.ts[4] == 0.0f);
    /* advancing a finished chunk is harmless */
    fb_chunk_sampler_advance(&cs);
    float t;
    const float *in;
    CHECK(fb_chunk_sampler_next(&cs, &t, &in) == FB_CALL_DONE);
}

/* fb_cfg_combine: v_u + g (v_c - v_u) with each float operation rounded (no FMA). */
static void test_cfg_combine(void)
{
    enum { N = 5 };
    const float vc[N] = {1.0f, -2.5f, 0.1f, 3.0e-3f, 7.0f};
    const float vu[N] = {0.5f, 1.5f, 0.3f, -1.0e-3f, 7.0f};
    float out[N], alias[N];
    fb_cfg_combine(out, vc, vu, 3.0f, N);
    for (int i = 0; i < N; i++) {
        volatile float d = vc[i] - vu[i];
        volatile float p = 3.0f * d;
        float want = vu[i] + p;
        CHECK(out[i] == want);
    }
    CHECK(out[0] == 2.0f && out[1] == -10.5f && out[4] == 7.0f);
    /* g = 1 gives v_c back (up to the rounding of v_u + (v_c - v_u)); exact here */
    fb_cfg_combine(out, vc, vu, 1.0f, N);
    CHECK(out[0] == 1.0f && out[1] == -2.5f && out[4] == 7.0f);
    /* in place over v_c, as the sampler uses it */
    memcpy(alias, vc, sizeof alias);
    fb_cfg_combine(alias, alias, vu, 3.5f, N);
    fb_cfg_combine(out, vc, vu, 3.5f, N);
    CHECK(memcmp(alias, out, sizeof out) == 0);
}

/* With guidance 3 each denoising step asks for DENOISE then UNCOND on the same x and t; the
 * step then uses v_u + 3 (v_c - v_u); the context pass stays a single call. */
static void test_state_machine_guided(void)
{
    static const float steps[] = {1000, 750, 500, 250};
    fb_sampler_config c = sampler_cfg(5.0f, 1, 4, steps);
    c.guidance = 3.0f;
    fb_schedule s;
    char err[128];
    CHECK(fb_schedule_init(&s, &c, err, sizeof err) == 0 && s.guidance == 3.0f);
    enum { N = 6 };
    float x[N], x0[N], v[N], vu[N], ref_x[N], ref_x0[N], eps[N], comb[N];
    fb_chunk_sampler cs;
    fb_chunk_sampler_begin(&cs, &s, 3, 2, x, x0, v, vu, N, noise_const, NULL);
    noise_const(NULL, 3, 2, 0, ref_x, N);
    fb_call_kind kinds[16];
    float ts[16];
    int n_calls = 0;
    const float *cond_in = NULL;
    float cond_t = -1.0f;
    for (;;) {
        float t;
        const float *in;
        fb_call_kind k = fb_chunk_sampler_next(&cs, &t, &in);
        if (k == FB_CALL_DONE || n_calls >= 16)
            break;
        kinds[n_calls] = k;
        ts[n_calls] = t;
        n_calls++;
        int step = cs.step;
        if (k == FB_CALL_DENOISE) {
            CHECK(in == x && memcmp(x, ref_x, sizeof x) == 0);
            cond_in = in;
            cond_t = t;
            for (int i = 0; i < N; i++)
                v[i] = in[i] * 0.5f + 2.0f;          /* "conditional" stand-in */
        } else if (k == FB_CALL_UNCOND) {
            CHECK(in == cond_in && t == cond_t);      /* same input, same timestep */
            for (int i = 0; i < N; i++)
                vu[i] = in[i] * 0.25f - 1.0f;        /* "unconditional" stand-in */
            fb_cfg_combine(comb, v, vu, 3.0f, N);
            for (int i = 0; i < N; i++)
                ref_x0[i] = (float)((double)ref_x[i] - (double)s.sigmas[step] * (double)comb[i]);
            if (step + 1 < s.n_steps) {
                noise_const(NULL, 3, 2, (unsigned)(step + 1), eps, N);
                fb_renoise(ref_x, ref_x0, eps, s.sigmas[step + 1], N);
            }
        } else {
            CHECK(k == FB_CALL_CONTEXT && in == x0);
        }
        fb_chunk_sampler_advance(&cs);
        if (k == FB_CALL_DENOISE)
            CHECK(cs.step == step);                    /* the step waits for its UNCOND call */
        if (k == FB_CALL_UNCOND) {
            CHECK(cs.step == step + 1);
            CHECK(memcmp(v, comb, sizeof v) == 0);     /* v holds the combined flow */
            CHECK(memcmp(x0, ref_x0, sizeof x0) == 0);
            if (cs.step < s.n_steps)
                CHECK(memcmp(x, ref_x, sizeof x) == 0);
        }
    }
    CHECK(n_calls == 9);
    for (int i = 0; i < 4; i++) {
        CHECK(kinds[2 * i] == FB_CALL_DENOISE && kinds[2 * i + 1] == FB_CALL_UNCOND);
        CHECK(ts[2 * i] == s.timesteps[i] && ts[2 * i + 1] == s.timesteps[i]);
    }
    CHECK(kinds[8] == FB_CALL_CONTEXT);
    float t;
    const float *in;
    CHECK(fb_chunk_sampler_next(&cs, &t, &in) == FB_CALL_DONE);

    /* out of range scales are refused by the schedule too */
    c.guidance = 0.0f;
    CHECK(fb_schedule_init(&s, &c, err, sizeof err) == -1 && strstr(err, "guidance"));
    c.guidance = 25.0f;
    CHECK(fb_schedule_init(&s, &c, err, sizeof err) == -1 && strstr(err, "guidance"));
}

static const fb_st_tensor *need(const fb_safetensors *st, const char *name)
{
    const fb_st_tensor *t = fb_st_find(st, name);
    CHECK_MSG(t != NULL && t->dtype == FB_DT_F32, "tensor %s missing or not F32", name);
    return t && t->dtype == FB_DT_F32 ? t : NULL;
}

/* Bit-exact step arithmetic against the upstream Self-Forcing run. */
static void test_upstream(const char *dir)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/causal_dit.safetensors", dir);
    fb_safetensors *st = fb_st_open(path, err, sizeof err);
    if (!st) {
        printf("upstream golden not available (%s): skipped\n", err);
        return;
    }
    static const float steps[] = {1000, 750, 500, 250};
    fb_sampler_config c = sampler_cfg(5.0f, 1, 4, steps);
    fb_schedule s;
    CHECK(fb_schedule_init(&s, &c, err, sizeof err) == 0);
    static const struct { const char *run; int chunks; } runs[] = {
        {"global", 3}, {"win9sink3", 6}, {"win6sink0", 4}};
    int compared = 0;
    for (size_t r = 0; r < 3; r++) {
        char name[256];
        snprintf(name, sizeof name, "input.%s.timesteps", runs[r].run);
        const fb_st_tensor *ts = need(st, name);
        if (ts && ts->numel == 4) {
            float tv[4];
            fb_st_to_f32(ts, tv);
            for (int k = 0; k < 4; k++)
                CHECK_MSG(tv[k] == s.timesteps[k], "timestep %d: upstream %.9g, ours %.9g", k,
                          (double)tv[k], (double)s.timesteps[k]);
        }
        for (int ch = 0; ch < runs[r].chunks; ch++) {
            static float x_in[4][768], flow[4][768], x0[4][768], eps[4][768], out[768];
            int ok = 1;
            for (int k = 0; k < 4; k++) {
                const fb_st_tensor *t;
                snprintf(name, sizeof name, "inter.%s.c%d.s%d.x_in", runs[r].run, ch, k);
                ok &= (t = need(st, name)) && t->numel == 768 && !fb_st_to_f32(t, x_in[k]);
                snprintf(name, sizeof name, "inter.%s.c%d.s%d.flow", runs[r].run, ch, k);
                ok &= (t = need(st, name)) && t->numel == 768 && !fb_st_to_f32(t, flow[k]);
                snprintf(name, sizeof name, "inter.%s.c%d.s%d.x0", runs[r].run, ch, k);
                ok &= (t = need(st, name)) && t->numel == 768 && !fb_st_to_f32(t, x0[k]);
                if (k > 0) {
                    snprintf(name, sizeof name, "input.%s.c%d.s%d.eps", runs[r].run, ch, k);
                    ok &= (t = need(st, name)) && t->numel == 768 && !fb_st_to_f32(t, eps[k]);
                }
            }
            if (!ok)
                continue;
            for (int k = 0; k < 4; k++) {
                fb_flow_to_x0(out, x_in[k], flow[k], s.sigmas[k], 768);
                CHECK_MSG(memcmp(out, x0[k], sizeof out) == 0, "%s chunk %d step %d: x0 differs",
                          runs[r].run, ch, k);
                if (k > 0) {
                    fb_renoise(out, x0[k - 1], eps[k], s.sigmas[k], 768);
                    CHECK_MSG(memcmp(out, x_in[k], sizeof out) == 0,
                              "%s chunk %d step %d: renoised input differs", runs[r].run, ch, k);
                }
                compared++;
            }
        }
    }
    CHECK(compared == 4 * (3 + 6 + 4));
    printf("upstream step arithmetic: %d steps bit-identical\n", compared);
    fb_st_close(st);
}

int main(int argc, char **argv)
{
    /* Self-Forcing DMD / LongLive: shift 5, warped 1000 750 500 250. */
    static const float sf_steps[] = {1000, 750, 500, 250};
    static const float sf_t[] = {1000.0f, 937.5f, 833.33331298828125f, 625.0f};
    static const float sf_s[] = {1.0f, 0.9375f, 0.833333313465f, 0.625f};
    check_row(5.0f, 1, 4, sf_steps, sf_t, sf_s, 0.0, 1e-9);
    /* CausVid autoregressive: shift 8, 1000 757 522 fed as written, nearest-grid sigmas. */
    static const float cv_steps[] = {1000, 757, 522};
    static const float cv_t[] = {1000, 757, 522};
    static const float cv_s[] = {1.0f, 0.75676f, 0.52174f};
    check_row(8.0f, 0, 3, cv_steps, cv_t, cv_s, 0.0, 1e-5);
    /* CausVid warp_4step_cfg2: shift 8, warped. */
    static const float cw_t[] = {1000.0f, 960.0f, 888.889f, 727.273f};
    static const float cw_s[] = {1.0f, 0.96f, 0.88889f, 0.72727f};
    check_row(8.0f, 1, 4, sf_steps, cw_t, cw_s, 1e-3, 1e-5);

    /* The table itself: first entry is t = 1000 (sigma 1), decreasing, last > 0. */
    fb_sampler_config c = sampler_cfg(5.0f, 1, 4, sf_steps);
    CHECK(fb_schedule_table_sigma(&c, 0) == 1.0f);
    CHECK(fb_schedule_table_timestep(&c, 0) == 1000.0f);
    int mono = 1;
    for (int i = 1; i < 1000; i++)
        mono &= fb_schedule_table_timestep(&c, i) < fb_schedule_table_timestep(&c, i - 1);
    CHECK(mono);
    CHECK(fb_schedule_table_sigma(&c, 999) > 0.0f);
    CHECK(fb_schedule_sigma_of(&c, 0.0f) == 0.0f);
    CHECK(fb_schedule_sigma_of(&c, 937.5f) == 0.9375f);
    CHECK(fb_schedule_sigma_of(&c, 937.4f) == 0.9375f);   /* nearest entry */

    /* A warped step that is not an index of the table is refused. */
    static const float bad[] = {1000, 750.5f};
    fb_sampler_config cb = sampler_cfg(5.0f, 1, 2, bad);
    fb_schedule sb;
    char err[256];
    CHECK(fb_schedule_init(&sb, &cb, err, sizeof err) == -1 && strstr(err, "steps[1]"));

    test_state_machine();
    test_cfg_combine();
    test_state_machine_guided();
    if (argc > 1)
        test_upstream(argv[1]);
    TEST_EXIT();
}
