/* engine/config.c - parsing and validation of `flipbook.config` (see config.h).
 *
 * Every field is read through one of the get_* helpers below, which know the field's dotted
 * path and write the message on failure; the parse stops at the first error so that the
 * message is about the real problem, not a consequence of it. Unknown keys are refused (a
 * misspelt "window_frame" must not silently become the default).
 */
#include "engine/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *err;
    size_t err_size;
    int failed;
} pctx;

static void fail(pctx *p, const char *fmt, ...)
{
    if (p->failed)
        return;   /* keep the first message */
    p->failed = 1;
    if (!p->err || p->err_size == 0)
        return;
    int n = snprintf(p->err, p->err_size, "flipbook.config: ");
    if (n < 0 || (size_t)n >= p->err_size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
    va_end(ap);
}

static const char *json_kind(const cJSON *v)
{
    if (!v) return "nothing";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNull(v)) return "null";
    return "an invalid value";
}

/* Refuses keys of `obj` that are not in the NULL-terminated list. */
static void check_keys(pctx *p, const cJSON *obj, const char *section, const char *const *known)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            if (it->string && strcmp(it->string, *k) == 0)
                ok = 1;
        if (!ok) {
            if (section)
                fail(p, "%s.%s: unknown key (docs/model-format.md lists the fields)", section,
                     it->string ? it->string : "?");
            else
                fail(p, "%s: unknown section (expected dit, text_encoder, vae, sampler, stream, "
                     "tokenizer)", it->string ? it->string : "?");
            return;
        }
    }
}

static const cJSON *get_section(pctx *p, const cJSON *root, const char *name, int required)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!s) {
        if (required)
            fail(p, "%s: missing section", name);
        return NULL;
    }
    if (!cJSON_IsObject(s)) {
        fail(p, "%s: must be an object, got %s", name, json_kind(s));
        return NULL;
    }
    return s;
}

/* Integer field in [lo, hi]. When `def_ok` the field may be absent and gets `def`. */
static int get_int(pctx *p, const cJSON *sec, const char *sname, const char *key, long lo,
                   long hi, int def_ok, int def)
{
    if (p->failed || !sec)
        return def;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v) {
        if (!def_ok)
            fail(p, "%s.%s: missing", sname, key);
        return def;
    }
    if (!cJSON_IsNumber(v)) {
        fail(p, "%s.%s: must be an integer, got %s", sname, key, json_kind(v));
        return def;
    }
    double d = v->valuedouble;
    if (d != floor(d) || !isfinite(d)) {
        fail(p, "%s.%s: must be an integer, got %g", sname, key, d);
        return def;
    }
    if (d < (double)lo || d > (double)hi) {
        fail(p, "%s.%s: must be in [%ld, %ld], got %.0f", sname, key, lo, hi, d);
        return def;
    }
    return (int)d;
}

static double get_num(pctx *p, const cJSON *sec, const char *sname, const char *key, double lo,
                      double hi, int def_ok, double def)
{
    if (p->failed || !sec)
        return def;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v) {
        if (!def_ok)
            fail(p, "%s.%s: missing", sname, key);
        return def;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
        fail(p, "%s.%s: must be a number, got %s", sname, key, json_kind(v));
        return def;
    }
    if (v->valuedouble < lo || v->valuedouble > hi) {
        fail(p, "%s.%s: must be in [%g, %g], got %g", sname, key, lo, hi, v->valuedouble);
        return def;
    }
    return v->valuedouble;
}

static int get_bool(pctx *p, const cJSON *sec, const char *sname, const char *key, int def_ok,
                    int def)
{
    if (p->failed || !sec)
        return def;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v) {
        if (!def_ok)
            fail(p, "%s.%s: missing", sname, key);
        return def;
    }
    if (!cJSON_IsBool(v)) {
        fail(p, "%s.%s: must be true or false, got %s", sname, key, json_kind(v));
        return def;
    }
    return cJSON_IsTrue(v) ? 1 : 0;
}

static void get_str(pctx *p, const cJSON *sec, const char *sname, const char *key, char *dst,
                    size_t dst_size, const char *def)
{
    if (p->failed || !sec)
        return;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v) {
        if (!def)
            fail(p, "%s.%s: missing", sname, key);
        else
            snprintf(dst, dst_size, "%s", def);
        return;
    }
    if (!cJSON_IsString(v)) {
        fail(p, "%s.%s: must be a string, got %s", sname, key, json_kind(v));
        return;
    }
    if (strlen(v->valuestring) == 0 || strlen(v->valuestring) >= dst_size) {
        fail(p, "%s.%s: must be a string of 1 to %zu bytes", sname, key, dst_size - 1);
        return;
    }
    snprintf(dst, dst_size, "%s", v->valuestring);
}

/* Array of integers (or booleans when `bools`) with between min_n and max_n entries. Returns
 * the count. */
static int get_array(pctx *p, const cJSON *sec, const char *sname, const char *key, int *dst,
                     int min_n, int max_n, int bools, long lo, long hi)
{
    if (p->failed || !sec)
        return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v) {
        fail(p, "%s.%s: missing", sname, key);
        return 0;
    }
    if (!cJSON_IsArray(v)) {
        fail(p, "%s.%s: must be an array, got %s", sname, key, json_kind(v));
        return 0;
    }
    int n = cJSON_GetArraySize(v);
    if (n < min_n || n > max_n) {
        if (min_n == max_n)
            fail(p, "%s.%s: must have %d entries, got %d", sname, key, min_n, n);
        else
            fail(p, "%s.%s: must have %d to %d entries, got %d", sname, key, min_n, max_n, n);
        return 0;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (bools) {
            if (!cJSON_IsBool(it)) {
                fail(p, "%s.%s[%d]: must be true or false, got %s", sname, key, i,
                     json_kind(it));
                return 0;
            }
            dst[i] = cJSON_IsTrue(it) ? 1 : 0;
        } else {
            if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble)) {
                fail(p, "%s.%s[%d]: must be an integer, got %s", sname, key, i, json_kind(it));
                return 0;
            }
            if (it->valuedouble < (double)lo || it->valuedouble > (double)hi) {
                fail(p, "%s.%s[%d]: must be in [%ld, %ld], got %g", sname, key, i, lo, hi,
                     it->valuedouble);
                return 0;
            }
            dst[i] = (int)it->valuedouble;
        }
        i++;
    }
    return n;
}

#define BIG 1000000000L  /* upper bound for sizes: a sanity limit, far above any real model */

static void parse_dit(pctx *p, const cJSON *s, fb_dit_config *d)
{
    static const char *const keys[] = {"patch_size", "in_dim", "out_dim", "dim", "ffn_dim",
        "freq_dim", "text_dim", "text_len", "num_heads", "num_layers", "qk_norm",
        "cross_attn_norm", "eps", NULL};
    const char *n = "dit";
    check_keys(p, s, n, keys);
    get_array(p, s, n, "patch_size", d->patch_size, 3, 3, 0, 1, 64);
    d->in_dim = get_int(p, s, n, "in_dim", 1, 4096, 0, 0);
    d->out_dim = get_int(p, s, n, "out_dim", 1, 4096, 0, 0);
    d->dim = get_int(p, s, n, "dim", 1, 65536, 0, 0);
    d->ffn_dim = get_int(p, s, n, "ffn_dim", 1, 1 << 20, 0, 0);
    d->freq_dim = get_int(p, s, n, "freq_dim", 2, 65536, 0, 0);
    d->text_dim = get_int(p, s, n, "text_dim", 1, 65536, 0, 0);
    d->text_len = get_int(p, s, n, "text_len", 1, 65536, 0, 0);
    d->num_heads = get_int(p, s, n, "num_heads", 1, 1024, 0, 0);
    d->num_layers = get_int(p, s, n, "num_layers", 1, 1024, 0, 0);
    d->qk_norm = get_bool(p, s, n, "qk_norm", 1, 1);
    d->cross_attn_norm = get_bool(p, s, n, "cross_attn_norm", 1, 1);
    d->eps = (float)get_num(p, s, n, "eps", 1e-30, 1.0, 1, 1e-6);
}

static void parse_text(pctx *p, const cJSON *s, fb_text_config *t)
{
    static const char *const keys[] = {"arch", "vocab", "dim", "dim_attn", "dim_ffn",
        "num_heads", "num_layers", "num_buckets", "max_distance", "shared_pos", "eps",
        "max_tokens", NULL};
    const char *n = "text_encoder";
    check_keys(p, s, n, keys);
    get_str(p, s, n, "arch", t->arch, sizeof t->arch, NULL);
    t->vocab = get_int(p, s, n, "vocab", 2, BIG, 0, 0);
    t->dim = get_int(p, s, n, "dim", 1, 65536, 0, 0);
    t->dim_attn = get_int(p, s, n, "dim_attn", 1, 65536, 0, 0);
    t->dim_ffn = get_int(p, s, n, "dim_ffn", 1, 1 << 20, 0, 0);
    t->num_heads = get_int(p, s, n, "num_heads", 1, 1024, 0, 0);
    t->num_layers = get_int(p, s, n, "num_layers", 1, 1024, 0, 0);
    t->num_buckets = get_int(p, s, n, "num_buckets", 2, 4096, 0, 0);
    t->max_distance = get_int(p, s, n, "max_distance", 1, 1 << 20, 0, 0);
    t->shared_pos = get_bool(p, s, n, "shared_pos", 1, 0);
    t->eps = (float)get_num(p, s, n, "eps", 1e-30, 1.0, 1, 1e-6);
    t->max_tokens = get_int(p, s, n, "max_tokens", 1, 65536, 0, 0);
}

static void parse_vae(pctx *p, const cJSON *s, fb_vae_config *v)
{
    static const char *const keys[] = {"arch", "latent_channels", "image_channels",
        "decoder_channels", "encoder_channels", "decoder_time_upscale", "decoder_space_upscale",
        "encoder_time_downscale", "frames_to_trim", "patch_size", "warm_start", NULL};
    const char *n = "vae";
    check_keys(p, s, n, keys);
    get_str(p, s, n, "arch", v->arch, sizeof v->arch, NULL);
    v->latent_channels = get_int(p, s, n, "latent_channels", 1, 4096, 0, 0);
    v->image_channels = get_int(p, s, n, "image_channels", 1, 4, 0, 0);
    v->n_stages = get_array(p, s, n, "decoder_channels", v->decoder_channels, 2,
                            FB_CFG_MAX_STAGES, 0, 1, 65536);
    v->encoder_channels = get_int(p, s, n, "encoder_channels", 1, 65536, 0, 0);
    int nt = get_array(p, s, n, "decoder_time_upscale", v->decoder_time_upscale, 1,
                       FB_CFG_MAX_STAGES, 1, 0, 1);
    int ns = get_array(p, s, n, "decoder_space_upscale", v->decoder_space_upscale, 1,
                       FB_CFG_MAX_STAGES, 1, 0, 1);
    if (!p->failed && nt != v->n_stages - 1)
        fail(p, "vae.decoder_time_upscale: must have one entry per step between the %d "
             "decoder_channels stages (%d), got %d", v->n_stages, v->n_stages - 1, nt);
    if (!p->failed && ns != v->n_stages - 1)
        fail(p, "vae.decoder_space_upscale: must have one entry per step between the %d "
             "decoder_channels stages (%d), got %d", v->n_stages, v->n_stages - 1, ns);
    v->n_encoder_time = get_array(p, s, n, "encoder_time_downscale", v->encoder_time_downscale,
                                  1, FB_CFG_MAX_STAGES, 1, 0, 1);
    v->frames_to_trim = get_int(p, s, n, "frames_to_trim", 0, 64, 0, 0);
    v->patch_size = get_int(p, s, n, "patch_size", 1, 16, 1, 1);
    /* Absent in files made before it existed (and in converted upstream models): off. */
    v->warm_start = get_bool(p, s, n, "warm_start", 1, 0);
}

static void parse_sampler(pctx *p, const cJSON *s, fb_sampler_config *sc)
{
    static const char *const keys[] = {"num_train_timesteps", "shift", "steps", "warp",
        "context_t", "guidance", NULL};
    const char *n = "sampler";
    check_keys(p, s, n, keys);
    sc->num_train_timesteps = get_int(p, s, n, "num_train_timesteps", 2, 100000, 0, 0);
    sc->shift = (float)get_num(p, s, n, "shift", 1e-3, 1e3, 0, 1.0);
    sc->warp = get_bool(p, s, n, "warp", 1, 0);
    sc->context_t = (float)get_num(p, s, n, "context_t", 0.0, 1e5, 1, 0.0);
    /* Absent in files made before guidance existed: 1 keeps them exactly as they were. */
    sc->guidance = (float)get_num(p, s, n, "guidance", 1.0, 20.0, 1, 1.0);
    if (p->failed)
        return;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, "steps");
    if (!v) {
        fail(p, "sampler.steps: missing");
        return;
    }
    if (!cJSON_IsArray(v)) {
        fail(p, "sampler.steps: must be an array of timesteps, got %s", json_kind(v));
        return;
    }
    int cnt = cJSON_GetArraySize(v);
    if (cnt < 1 || cnt > FB_CFG_MAX_STEPS) {
        fail(p, "sampler.steps: must have 1 to %d entries, got %d", FB_CFG_MAX_STEPS, cnt);
        return;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
            fail(p, "sampler.steps[%d]: must be a number, got %s", i, json_kind(it));
            return;
        }
        sc->steps[i++] = (float)it->valuedouble;
    }
    sc->n_steps = cnt;
}

static void parse_stream(pctx *p, const cJSON *s, fb_stream_config *st)
{
    static const char *const keys[] = {"chunk_frames", "anchor_frames", "window_frames",
        "positions", "latent_height", "latent_width", "fps", NULL};
    const char *n = "stream";
    check_keys(p, s, n, keys);
    st->chunk_frames = get_int(p, s, n, "chunk_frames", 1, 64, 0, 0);
    st->anchor_frames = get_int(p, s, n, "anchor_frames", 0, 256, 0, 0);
    st->window_frames = get_int(p, s, n, "window_frames", -1, 1024, 0, 0);
    char pos[16] = "window";
    get_str(p, s, n, "positions", pos, sizeof pos, "window");
    if (!p->failed) {
        if (strcmp(pos, "window") == 0)
            st->positions = FB_POS_WINDOW;
        else if (strcmp(pos, "absolute") == 0)
            st->positions = FB_POS_ABSOLUTE;
        else
            fail(p, "stream.positions: must be \"window\" or \"absolute\", got \"%s\"", pos);
    }
    st->latent_height = get_int(p, s, n, "latent_height", 1, 4096, 0, 0);
    st->latent_width = get_int(p, s, n, "latent_width", 1, 4096, 0, 0);
    st->fps = get_num(p, s, n, "fps", 1e-3, 1000.0, 0, 16.0);
    if (!p->failed && st->window_frames == -1) {
        /* -1 = keep every past frame (upstream local_attn_size -1): only meaningful with
         * absolute positions, where the RoPE table bounds the stream anyway. */
        if (st->positions != FB_POS_ABSOLUTE) {
            fail(p, "stream.window_frames: -1 (unbounded) needs positions \"absolute\"; an "
                 "endless window stream must bound its window");
            return;
        }
        int room = FB_ROPE_MAX_POS - st->anchor_frames - st->chunk_frames;
        st->window_frames = room > 0 ? room / st->chunk_frames * st->chunk_frames : 0;
    }
}

int fb_config_parse(const char *json, fb_config *cfg, char *err, size_t err_size)
{
    pctx p = {err, err_size, 0};
    if (err && err_size)
        err[0] = '\0';
    if (!json || !cfg) {
        fail(&p, "no configuration given");
        return -1;
    }
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json ? (size_t)(at - json) : 0;
        fail(&p, "not valid JSON (near byte %zu)", off);
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        fail(&p, "must be a JSON object, got %s", json_kind(root));
        cJSON_Delete(root);
        return -1;
    }
    static const char *const sections[] = {"dit", "text_encoder", "vae", "sampler", "stream",
        "tokenizer", NULL};
    check_keys(&p, root, NULL, sections);
    const cJSON *dit = get_section(&p, root, "dit", 1);
    parse_dit(&p, dit, &cfg->dit);
    const cJSON *te = get_section(&p, root, "text_encoder", 1);
    parse_text(&p, te, &cfg->text);
    const cJSON *vae = get_section(&p, root, "vae", 1);
    parse_vae(&p, vae, &cfg->vae);
    const cJSON *smp = get_section(&p, root, "sampler", 1);
    parse_sampler(&p, smp, &cfg->sampler);
    const cJSON *st = get_section(&p, root, "stream", 1);
    parse_stream(&p, st, &cfg->stream);
    snprintf(cfg->tokenizer_tensor, sizeof cfg->tokenizer_tensor, "tokenizer.spm");
    const cJSON *tok = get_section(&p, root, "tokenizer", 0);
    if (tok) {
        static const char *const keys[] = {"tensor", NULL};
        check_keys(&p, tok, "tokenizer", keys);
        get_str(&p, tok, "tokenizer", "tensor", cfg->tokenizer_tensor,
                sizeof cfg->tokenizer_tensor, "tokenizer.spm");
    }
    cJSON_Delete(root);
    if (p.failed)
        return -1;
    return fb_config_validate(cfg, err, err_size);
}

/* Cross-field rules: the things a single field's range cannot express. */
int fb_config_validate(const fb_config *cfg, char *err, size_t err_size)
{
    pctx p = {err, err_size, 0};
    const fb_dit_config *d = &cfg->dit;
    const fb_text_config *t = &cfg->text;
    const fb_vae_config *v = &cfg->vae;
    const fb_sampler_config *s = &cfg->sampler;
    const fb_stream_config *st = &cfg->stream;

    if (d->patch_size[0] != 1)
        fail(&p, "dit.patch_size[0]: the causal DiT patches single latent frames (1), got %d",
             d->patch_size[0]);
    else if (d->patch_size[1] < 1 || d->patch_size[2] < 1)
        fail(&p, "dit.patch_size: spatial patch sizes must be positive");
    else if (d->num_heads < 1 || d->dim % d->num_heads != 0)
        fail(&p, "dit.num_heads: must divide dit.dim (%d), got %d", d->dim, d->num_heads);
    else if ((d->dim / d->num_heads) % 2 != 0 || d->dim / d->num_heads < 6)
        fail(&p, "dit.num_heads: head dim dit.dim/num_heads = %d must be even and >= 6 (3D "
             "RoPE splits it into time, height and width pairs)", d->dim / d->num_heads);
    else if (d->freq_dim % 2 != 0)
        fail(&p, "dit.freq_dim: must be even (cos and sin halves), got %d", d->freq_dim);
    else if (d->in_dim != v->latent_channels)
        fail(&p, "dit.in_dim: must equal vae.latent_channels (%d), got %d", v->latent_channels,
             d->in_dim);
    else if (d->out_dim != d->in_dim)
        fail(&p, "dit.out_dim: must equal dit.in_dim (%d): the flow has the latent's shape, "
             "got %d", d->in_dim, d->out_dim);
    else if (d->text_dim != t->dim)
        fail(&p, "dit.text_dim: must equal text_encoder.dim (%d), got %d", t->dim, d->text_dim);
    else if (t->max_tokens > d->text_len)
        fail(&p, "text_encoder.max_tokens: must be at most dit.text_len (%d), got %d",
             d->text_len, t->max_tokens);
    else if (strcmp(t->arch, "umt5") != 0)
        fail(&p, "text_encoder.arch: must be \"umt5\", got \"%s\"", t->arch);
    else if (t->num_heads < 1 || t->dim_attn % t->num_heads != 0)
        fail(&p, "text_encoder.num_heads: must divide text_encoder.dim_attn (%d), got %d",
             t->dim_attn, t->num_heads);
    else if (strcmp(t->arch, "umt5") == 0 && t->shared_pos)
        fail(&p, "text_encoder.shared_pos: umt5 has a relative bias per layer (false)");
    else if (strcmp(v->arch, "taehv") != 0)
        fail(&p, "vae.arch: must be \"taehv\", got \"%s\"", v->arch);
    else if (v->image_channels != 3)
        fail(&p, "vae.image_channels: frames are RGB (3), got %d", v->image_channels);
    else if (v->warm_start != 0 && v->warm_start != 1)
        fail(&p, "vae.warm_start: must be true or false (0 or 1), got %d", v->warm_start);
    else if (fb_config_frames_per_latent(cfg) * st->chunk_frames <= v->frames_to_trim)
        fail(&p, "vae.frames_to_trim: %d would drop the whole first chunk (%d frames)",
             v->frames_to_trim, fb_config_frames_per_latent(cfg) * st->chunk_frames);
    if (p.failed)
        return -1;

    /* Sampler: steps strictly decreasing inside (0, T]. */
    for (int i = 0; i < s->n_steps; i++) {
        if (!(s->steps[i] > 0.0f) || s->steps[i] > (float)s->num_train_timesteps) {
            fail(&p, "sampler.steps[%d]: must be in (0, num_train_timesteps=%d], got %g", i,
                 s->num_train_timesteps, (double)s->steps[i]);
            return -1;
        }
        if (i > 0 && !(s->steps[i] < s->steps[i - 1])) {
            fail(&p, "sampler.steps[%d]: steps must decrease, got %g after %g", i,
                 (double)s->steps[i], (double)s->steps[i - 1]);
            return -1;
        }
        if (s->warp && s->steps[i] != (float)(int)s->steps[i]) {
            fail(&p, "sampler.steps[%d]: with warp the steps index the %d-step table and must "
                 "be integers, got %g", i, s->num_train_timesteps, (double)s->steps[i]);
            return -1;
        }
    }
    if (s->n_steps < 1) {
        fail(&p, "sampler.steps: must have at least one step");
        return -1;
    }
    if (s->context_t >= s->steps[s->n_steps - 1]) {
        fail(&p, "sampler.context_t: must be below the last step (%g), got %g",
             (double)s->steps[s->n_steps - 1], (double)s->context_t);
        return -1;
    }

    /* Stream geometry. */
    if (st->latent_height % d->patch_size[1] != 0)
        fail(&p, "stream.latent_height: must be a multiple of dit.patch_size[1] (%d), got %d",
             d->patch_size[1], st->latent_height);
    else if (st->latent_width % d->patch_size[2] != 0)
        fail(&p, "stream.latent_width: must be a multiple of dit.patch_size[2] (%d), got %d",
             d->patch_size[2], st->latent_width);
    else if (st->positions == FB_POS_ABSOLUTE &&
             st->anchor_frames + st->window_frames + st->chunk_frames > FB_ROPE_MAX_POS)
        fail(&p, "stream.window_frames: anchors + window + chunk exceed the RoPE table (%d)",
             FB_ROPE_MAX_POS);
    else if (st->positions == FB_POS_WINDOW &&
             st->anchor_frames + st->window_frames + st->chunk_frames > FB_ROPE_MAX_POS)
        fail(&p, "stream.window_frames: anchors + window + chunk = %d exceeds %d positions",
             st->anchor_frames + st->window_frames + st->chunk_frames, FB_ROPE_MAX_POS);
    else if (fb_config_frame_width(cfg) > 16384 || fb_config_frame_height(cfg) > 16384)
        fail(&p, "stream.latent_width/latent_height: decoded frames of %dx%d are too large",
             fb_config_frame_width(cfg), fb_config_frame_height(cfg));
    return p.failed ? -1 : 0;
}

int fb_config_head_dim(const fb_config *cfg)
{
    return cfg->dit.dim / cfg->dit.num_heads;
}

int fb_config_tokens_per_frame(const fb_config *cfg)
{
    return (cfg->stream.latent_height / cfg->dit.patch_size[1]) *
           (cfg->stream.latent_width / cfg->dit.patch_size[2]);
}

int fb_config_latent_frame_floats(const fb_config *cfg)
{
    return cfg->dit.in_dim * cfg->stream.latent_height * cfg->stream.latent_width;
}

static int space_factor(const fb_config *cfg)
{
    int f = cfg->vae.patch_size;
    for (int i = 0; i < cfg->vae.n_stages - 1; i++)
        if (cfg->vae.decoder_space_upscale[i])
            f *= 2;
    return f;
}

int fb_config_frame_width(const fb_config *cfg)
{
    return cfg->stream.latent_width * space_factor(cfg);
}

int fb_config_frame_height(const fb_config *cfg)
{
    return cfg->stream.latent_height * space_factor(cfg);
}

int fb_config_frames_per_latent(const fb_config *cfg)
{
    int f = 1;
    for (int i = 0; i < cfg->vae.n_stages - 1; i++)
        if (cfg->vae.decoder_time_upscale[i])
            f *= 2;
    return f;
}

int fb_config_frames_in_chunk(const fb_config *cfg, int64_t chunk)
{
    int n = fb_config_frames_per_latent(cfg) * cfg->stream.chunk_frames;
    return chunk == 0 ? n - cfg->vae.frames_to_trim : n;
}

int fb_config_max_frames_per_chunk(const fb_config *cfg)
{
    return fb_config_frames_per_latent(cfg) * cfg->stream.chunk_frames;
}

int fb_config_attended_frames(const fb_config *cfg)
{
    return cfg->stream.anchor_frames + cfg->stream.window_frames + cfg->stream.chunk_frames;
}
