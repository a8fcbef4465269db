/* engine/engine.c - models: finding and loading the file, the shared KV pool, prompt cache and
 * execution contexts, the queries of engine.h, and the prompt tokenizing rules every stream
 * uses.
 * Streams and the chunk loop are in engine_stream.c.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "engine/engine_internal.h"

const char *fb_status_str(fb_status st)
{
    switch (st) {
    case FB_OK: return "ok";
    case FB_E_INVALID: return "invalid argument";
    case FB_E_NOT_FOUND: return "model not found";
    case FB_E_IO: return "cannot read the model file";
    case FB_E_FORMAT: return "malformed model file";
    case FB_E_NO_MEMORY: return "out of memory";
    case FB_E_NO_KV: return "KV cache pool full";
    case FB_E_LIMIT: return "model limit reached";
    case FB_E_STATE: return "not possible in the current state";
    case FB_E_BACKEND: return "compute backend failure";
    case FB_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

fb_model_params fb_model_default_params(void)
{
    fb_model_params p;
    memset(&p, 0, sizeof p);
    p.backend = FB_BACKEND_AUTO;
    p.n_threads = 0;
    p.kv_budget_bytes = 0;
    p.max_streams = 1;
    p.prompt_cache_entries = 16;
    p.prompt_cache_bytes = (size_t)256 << 20;
    p.max_parallel_calls = 1;
    p.max_batch = 0;
    return p;
}

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* ---- finding "default" ----------------------------------------------------------------- */

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

#define DEFAULT_REL "default/model.safetensors"

/* Appends ", item" (or the first item) to a list in buf; silently stops when full. */
static size_t append_list(char *buf, size_t size, size_t used, const char *item)
{
    size_t add = strlen(item) + (used ? 2 : 0);
    if (used + add + 1 > size)
        return used;
    if (used) {
        memcpy(buf + used, ", ", 2);
        used += 2;
    }
    memcpy(buf + used, item, strlen(item) + 1);
    return used + strlen(item);
}

/* Resolves "default": $FLIPBOOK_MODELS/default/model.safetensors when the variable is set,
 * else models/default/model.safetensors beside the running executable's install prefix
 * (<prefix>/share/flipbook/models) or build tree, else the source tree's models/ folder the
 * build was configured from. Writes the candidates it tried into `tried`. */
static int resolve_default(char *out, size_t out_size, char *tried, size_t tried_size)
{
    size_t used = 0;
    tried[0] = '\0';
#define TRY(...)                                                                     \
    do {                                                                             \
        int n_ = snprintf(out, out_size, __VA_ARGS__);                               \
        if (n_ > 0 && (size_t)n_ < out_size) {                                       \
            if (is_file(out))                                                        \
                return 0;                                                            \
            used = append_list(tried, tried_size, used, out);                       \
        }                                                                            \
    } while (0)
    const char *env = getenv("FLIPBOOK_MODELS");
    if (env && env[0]) {
        TRY("%s/" DEFAULT_REL, env);
        return -1;   /* an explicit setting is not second-guessed */
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';   /* exe = the executable's folder */
            TRY("%s/../share/flipbook/models/" DEFAULT_REL, exe);
            TRY("%s/../models/" DEFAULT_REL, exe);
            TRY("%s/../../models/" DEFAULT_REL, exe);
        }
    }
#ifdef FLIPBOOK_SOURCE_DIR
    TRY("%s/models/" DEFAULT_REL, FLIPBOOK_SOURCE_DIR);
#endif
#undef TRY
    return -1;
}

/* ---- execution contexts ----------------------------------------------------------------- */

/* Starts the shared contexts: max_parallel_calls of n_threads threads, each with the scratch of
 * a batched DiT pass over max_batch chunk calls. The scratch is reserved now and its pages are
 * committed by the first batch that uses them (a model that never batches pays nothing). */
static fb_status init_exec(fb_model *m, char *err, size_t err_size)
{
    const fb_model_params *p = &m->params;
    int pool_streams = fb_model_streams_available(m);
    m->max_batch = p->max_batch;
    if (m->max_batch == 0)
        m->max_batch = pool_streams < FB_DEFAULT_MAX_BATCH ? pool_streams : FB_DEFAULT_MAX_BATCH;
    if (m->max_batch < 1)
        m->max_batch = 1;
    if (pthread_mutex_init(&m->exec_mu, NULL) != 0)
        return snprintf(err, err_size, "cannot create a mutex"), FB_E_NO_MEMORY;
    if (pthread_cond_init(&m->exec_cv, NULL) != 0) {
        pthread_mutex_destroy(&m->exec_mu);
        return snprintf(err, err_size, "cannot create a condition variable"), FB_E_NO_MEMORY;
    }
    m->exec_sync = 1;
    m->exec = calloc((size_t)p->max_parallel_calls, sizeof *m->exec);
    if (!m->exec)
        return snprintf(err, err_size, "out of memory"), FB_E_NO_MEMORY;
    size_t sb = 0;
    if (m->max_batch > 1)
        sb = fb_dit_scratch_bytes_batch(&m->cfg.dit, m->max_batch, m->F, m->A + m->Wn, m->tpf);
    for (int i = 0; i < p->max_parallel_calls; i++) {
        fb__exec *e = &m->exec[i];
        char tmp[FB_ERR_MAX];
        if (fb_kctx_init(&e->kc, m->n_threads, tmp, sizeof tmp) != 0)
            return snprintf(err, err_size, "compute threads: %s", tmp), FB_E_NO_MEMORY;
        m->n_exec = i + 1;
        if (sb) {
            e->batch_scratch = aligned_alloc(64, (sb + 63) & ~(size_t)63);
            if (!e->batch_scratch)
                return snprintf(err, err_size, "out of memory: a batched pass over %d streams "
                                "needs %.1f MiB of scratch per context (lower max_batch)",
                                m->max_batch, (double)sb / 1048576.0), FB_E_NO_MEMORY;
            e->batch_scratch_bytes = sb;
        }
    }
    m->exec_threads = fb_kctx_n_threads(m->exec[0].kc);
    return FB_OK;
}

static void free_exec(fb_model *m)
{
    for (int i = 0; i < m->n_exec; i++) {
        fb_kctx_free(m->exec[i].kc);
        free(m->exec[i].batch_scratch);
    }
    free(m->exec);
    if (m->exec_sync) {
        pthread_mutex_destroy(&m->exec_mu);
        pthread_cond_destroy(&m->exec_cv);
    }
}

fb__exec *fb__exec_acquire(fb_model *m)
{
    pthread_mutex_lock(&m->exec_mu);
    for (;;) {
        for (int i = 0; i < m->n_exec; i++)
            if (!m->exec[i].busy) {
                m->exec[i].busy = 1;
                pthread_mutex_unlock(&m->exec_mu);
                return &m->exec[i];
            }
        pthread_cond_wait(&m->exec_cv, &m->exec_mu);
    }
}

void fb__exec_release(fb_model *m, fb__exec *e)
{
    pthread_mutex_lock(&m->exec_mu);
    e->busy = 0;
    pthread_cond_signal(&m->exec_cv);
    pthread_mutex_unlock(&m->exec_mu);
}

/* ---- loading ---------------------------------------------------------------------------- */

/* The example prompts are only passed on (to the web page) when they are what they claim to
 * be: a JSON array of strings. A malformed entry is not worth refusing the model over. */
static const char *prompts_if_valid(const char *json)
{
    if (!json)
        return NULL;
    cJSON *a = cJSON_Parse(json);
    int ok = cJSON_IsArray(a);
    for (const cJSON *e = ok ? a->child : NULL; e; e = e->next)
        ok = ok && cJSON_IsString(e);
    cJSON_Delete(a);
    return ok ? json : NULL;
}

static fb_status load_fail(fb_model *m, fb_status st)
{
    fb_model_free(m);
    return st;
}

fb_status fb_model_load(const char *path, const fb_model_params *params, fb_model **out,
                        char *err, size_t err_size)
{
    char tmp[FB_ERR_MAX];
    fb_status st_exec;
    if (err && err_size)
        err[0] = '\0';
    if (!out) {
        set_err(err, err_size, "fb_model_load: out is NULL");
        return FB_E_INVALID;
    }
    *out = NULL;
    if (!path || !path[0]) {
        set_err(err, err_size, "fb_model_load: no model path given");
        return FB_E_INVALID;
    }
    fb_model_params p = params ? *params : fb_model_default_params();
    if (p.n_threads < 0 || p.max_streams < 0 || p.prompt_cache_entries < 0 ||
        p.backend < FB_BACKEND_AUTO || p.backend > FB_BACKEND_CUDA) {
        set_err(err, err_size, "fb_model_load: negative thread, stream or cache count, or an "
                "unknown backend");
        return FB_E_INVALID;
    }
    if (p.backend == FB_BACKEND_CUDA) {
        set_err(err, err_size, "fb_model_load: the CUDA backend is not available in this build "
                "of the engine (use FB_BACKEND_AUTO or FB_BACKEND_CPU)");
        return FB_E_INVALID;
    }
    if (p.max_parallel_calls < 0 || p.max_parallel_calls > FB_MAX_PARALLEL_CALLS) {
        set_err(err, err_size, "fb_model_load: max_parallel_calls must be in [0, %d], got %d",
                FB_MAX_PARALLEL_CALLS, p.max_parallel_calls);
        return FB_E_INVALID;
    }
    if (p.max_batch < 0 || p.max_batch > FB_DIT_MAX_BATCH) {
        set_err(err, err_size, "fb_model_load: max_batch must be in [0, %d], got %d",
                FB_DIT_MAX_BATCH, p.max_batch);
        return FB_E_INVALID;
    }
    if (p.max_streams == 0)
        p.max_streams = 1;
    if (p.max_parallel_calls == 0)
        p.max_parallel_calls = 1;

    fb_model *m = calloc(1, sizeof *m);
    if (!m) {
        set_err(err, err_size, "out of memory");
        return FB_E_NO_MEMORY;
    }
    m->params = p;

    if (strcmp(path, "default") == 0) {
        char tried[2048];
        if (resolve_default(m->path, sizeof m->path, tried, sizeof tried) != 0) {
            set_err(err, err_size, "the default model (models/default/model.safetensors) was not "
                    "found: it is trained in this repository and is not there yet, or not "
                    "installed. Looked in: %s. Set FLIPBOOK_MODELS to the folder that holds "
                    "default/model.safetensors, or pass the path of a model file", tried);
            return load_fail(m, FB_E_NOT_FOUND);
        }
    } else {
        snprintf(m->path, sizeof m->path, "%s", path);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            set_err(err, err_size, "%s: %s", path, strerror(errno));
            return load_fail(m, errno == ENOENT ? FB_E_NOT_FOUND : FB_E_IO);
        }
        if (!S_ISREG(sb.st_mode)) {
            set_err(err, err_size, "%s: not a regular file", path);
            return load_fail(m, FB_E_IO);
        }
    }

    m->st = fb_st_open(m->path, tmp, sizeof tmp);
    if (!m->st) {
        set_err(err, err_size, "%s: %s", m->path, tmp);
        /* fb_st_open's messages distinguish unreadable files from malformed ones only in
         * text; a file that exists but cannot be opened is an I/O problem. */
        return load_fail(m, access(m->path, R_OK) != 0 ? FB_E_IO : FB_E_FORMAT);
    }
    const char *fmt = fb_st_metadata(m->st, "flipbook.format");
    if (!fmt) {
        set_err(err, err_size, "%s: not a flipbook model: the safetensors metadata has no "
                "flipbook.format (convert checkpoints with the tool in tools/)", m->path);
        return load_fail(m, FB_E_FORMAT);
    }
    if (strcmp(fmt, "1") != 0) {
        set_err(err, err_size, "%s: flipbook.format is \"%s\"; this engine reads format \"1\"",
                m->path, fmt);
        return load_fail(m, FB_E_FORMAT);
    }
    const char *cfg_json = fb_st_metadata(m->st, "flipbook.config");
    if (!cfg_json) {
        set_err(err, err_size, "%s: the metadata has no flipbook.config", m->path);
        return load_fail(m, FB_E_FORMAT);
    }
    if (fb_config_parse(cfg_json, &m->cfg, tmp, sizeof tmp) != 0) {
        set_err(err, err_size, "%s: %s", m->path, tmp);
        return load_fail(m, FB_E_FORMAT);
    }
    const char *name = fb_st_metadata(m->st, "flipbook.name");
    snprintf(m->cfg.name, sizeof m->cfg.name, "%s", name && name[0] ? name : "unnamed");
    m->prompts_json = prompts_if_valid(fb_st_metadata(m->st, "flipbook.prompts"));
    const fb_config *c = &m->cfg;

    /* Components: each loader checks its tensors' presence, shapes and dtypes. */
    int rc = fb_dit_load(m->st, "dit.", &c->dit, &m->dit, tmp, sizeof tmp);
    if (rc != 0) {
        set_err(err, err_size, "%s: DiT: %s", m->path, tmp);
        return load_fail(m, rc == FB_DIT_ERR_NOMEM ? FB_E_NO_MEMORY : FB_E_FORMAT);
    }
    const fb_st_tensor *spm = fb_st_find(m->st, c->tokenizer_tensor);
    if (!spm || spm->dtype != FB_DT_U8 || spm->ndim != 1) {
        set_err(err, err_size, "%s: tokenizer: tensor %s %s", m->path, c->tokenizer_tensor,
                spm ? "must be a 1-D U8 tensor holding the SentencePiece model" : "is missing");
        return load_fail(m, FB_E_FORMAT);
    }
    m->tok = fb_tok_load(spm->data, spm->nbytes, tmp, sizeof tmp);
    if (!m->tok) {
        set_err(err, err_size, "%s: tokenizer %s: %s", m->path, c->tokenizer_tensor, tmp);
        return load_fail(m, FB_E_FORMAT);
    }
    if (fb_tok_vocab_size(m->tok) > c->text.vocab) {
        set_err(err, err_size, "%s: tokenizer has %d pieces but text_encoder.vocab is %d",
                m->path, fb_tok_vocab_size(m->tok), c->text.vocab);
        return load_fail(m, FB_E_FORMAT);
    }
    if (fb_tok_eos_id(m->tok) < 0) {
        set_err(err, err_size, "%s: tokenizer has no EOS piece (the text encoder expects one)",
                m->path);
        return load_fail(m, FB_E_FORMAT);
    }
    rc = fb_t5_load(m->st, "text_encoder.", &c->text, &m->t5, tmp, sizeof tmp);
    if (rc != 0) {
        set_err(err, err_size, "%s: text encoder: %s", m->path, tmp);
        return load_fail(m, FB_E_FORMAT);
    }
    rc = fb_taehv_load(m->st, "vae.", &c->vae, &m->vae, tmp, sizeof tmp);
    if (rc != 0) {
        set_err(err, err_size, "%s: decoder: %s", m->path, tmp);
        return load_fail(m, FB_E_FORMAT);
    }
    if (fb_schedule_init(&m->sched, &c->sampler, tmp, sizeof tmp) != 0) {
        set_err(err, err_size, "%s: %s", m->path, tmp);
        return load_fail(m, FB_E_FORMAT);
    }

    /* Derived sizes. */
    m->tpf = fb_config_tokens_per_frame(c);
    m->C = c->dit.in_dim;
    m->H = c->stream.latent_height;
    m->W = c->stream.latent_width;
    m->lat_floats = (size_t)m->C * m->H * m->W;
    m->F = c->stream.chunk_frames;
    m->A = c->stream.anchor_frames;
    m->Wn = c->stream.window_frames;
    m->width = fb_config_frame_width(c);
    m->height = fb_config_frame_height(c);
    m->frame_bytes = (size_t)m->width * m->height * 3;
    m->max_chunk_frames = fb_config_max_frames_per_chunk(c);
    m->recache_frames = m->F;
    if (m->Wn > m->recache_frames)
        m->recache_frames = m->Wn;
    if (m->A > m->recache_frames)
        m->recache_frames = m->A;
    m->n_threads = p.n_threads;

    /* KV pool: one page per layer and frame slot. */
    size_t page = fb_kv_frame_bytes(m->tpf, c->dit.dim);
    size_t slots = (size_t)c->dit.num_layers * (size_t)(m->A + m->Wn);
    m->kv_bytes_per_stream = page * slots;
    size_t budget = p.kv_budget_bytes;
    if (budget == 0)
        budget = m->kv_bytes_per_stream * (size_t)p.max_streams;
    if (budget < m->kv_bytes_per_stream) {
        set_err(err, err_size, "KV budget of %zu bytes holds no stream: one stream of this model "
                "needs %zu bytes (%d layers x %d frame slots x %zu bytes)", budget,
                m->kv_bytes_per_stream, c->dit.num_layers, m->A + m->Wn, page);
        return load_fail(m, FB_E_INVALID);
    }
    rc = fb_kvpool_init(&m->pool, budget, page, tmp, sizeof tmp);
    if (rc != 0) {
        set_err(err, err_size, "KV pool of %zu bytes: %s", budget, tmp);
        return load_fail(m, rc == FB_KV_ERR_NOMEM ? FB_E_NO_MEMORY : FB_E_INVALID);
    }
    m->prompts = fb_prompt_cache_new(p.prompt_cache_entries, p.prompt_cache_bytes);
    if (!m->prompts) {
        set_err(err, err_size, "out of memory");
        return load_fail(m, FB_E_NO_MEMORY);
    }

    /* Per-stream memory, known before any open: the arena (laid out by engine_stream.c) and
     * the decoder's state. */
    m->stream_bytes = fb__stream_arena_bytes(m);
    if (m->stream_bytes == 0) {
        set_err(err, err_size, "out of memory");
        return load_fail(m, FB_E_NO_MEMORY);
    }
    m->stream_bytes += fb_taehv_stream_bytes(m->vae, m->H, m->W);

    st_exec = init_exec(m, tmp, sizeof tmp);
    if (st_exec != FB_OK) {
        set_err(err, err_size, "%s", tmp);
        return load_fail(m, st_exec);
    }
    m->weight_bytes = fb_dit_weight_bytes(m->dit) + fb_t5_weight_bytes(m->t5) +
                      fb_taehv_weight_bytes(m->vae);
    *out = m;
    return FB_OK;
}

void fb_model_free(fb_model *m)
{
    if (!m)
        return;
    free_exec(m);
    fb_prompt_cache_free(m->prompts);
    fb_kvpool_free(m->pool);
    fb_taehv_free(m->vae);
    fb_t5_free(m->t5);
    fb_tok_free(m->tok);
    fb_dit_free(m->dit);
    fb_st_close(m->st);
    free(m);
}

/* ---- queries ---------------------------------------------------------------------------- */

void fb_model_get_info(const fb_model *m, fb_model_info *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    if (!m)
        return;
    const fb_config *c = &m->cfg;
    o->name = c->name;
    o->prompts_json = m->prompts_json;
    o->backend = "cpu";
    o->width = m->width;
    o->height = m->height;
    o->fps = c->stream.fps;
    o->frames_per_chunk = fb_config_frames_in_chunk(c, 1);
    o->first_chunk_frames = fb_config_frames_in_chunk(c, 0);
    o->frame_bytes = m->frame_bytes;
    o->chunk_rgb_bytes = m->frame_bytes * (size_t)m->max_chunk_frames;
    o->latent_channels = m->C;
    o->latent_height = m->H;
    o->latent_width = m->W;
    o->latent_frames_per_chunk = m->F;
    o->anchor_frames = m->A;
    o->window_frames = m->Wn;
    o->steps = m->sched.n_steps;
    o->guidance = m->sched.guidance;
    o->absolute_positions = c->stream.positions == FB_POS_ABSOLUTE;
    o->max_chunks = o->absolute_positions ? FB_ROPE_MAX_POS / m->F : 0;
    o->kv_bytes_per_stream = m->kv_bytes_per_stream;
    fb_kvpool_stats ps;
    fb_kvpool_stats_get(m->pool, &ps);
    o->kv_pool_bytes = ps.budget_bytes;
    int64_t per = fb_kvpool_pages_for(m->pool, c->dit.num_layers, m->A, m->Wn, m->tpf,
                                      c->dit.dim);
    o->max_streams = per > 0 ? (int)(ps.pages_total / per) : 0;
    o->stream_bytes = m->stream_bytes;
    o->weight_bytes = m->weight_bytes;
    double steady = fb_dit_flops(&c->dit, m->F, m->A + m->Wn, m->tpf);
    o->dit_gflop_per_chunk = steady * (m->sched.n_steps + 1) / 1e9;
    o->decode_gflop_per_chunk = fb_taehv_decode_flops(m->vae, m->H, m->W) * m->F / 1e9;
    o->threads_per_call = m->exec_threads;
    o->max_parallel_calls = m->n_exec;
    o->max_batch = m->max_batch;
    for (int i = 0; i < m->n_exec; i++)
        o->exec_bytes += m->exec[i].batch_scratch_bytes;
}

int fb_model_streams_available(const fb_model *m)
{
    if (!m)
        return 0;
    fb_kvpool_stats ps;
    fb_kvpool_stats_get(m->pool, &ps);
    int64_t per = fb_kvpool_pages_for(m->pool, m->cfg.dit.num_layers, m->A, m->Wn, m->tpf,
                                      m->cfg.dit.dim);
    if (per <= 0)
        return 0;
    return (int)((ps.pages_total - ps.pages_used) / per);
}

/* ---- prompts ---------------------------------------------------------------------------- */

/* Upstream cleans prompts before tokenizing (HTML entities unescaped twice; whitespace runs
 * collapse, which SentencePiece's remove_extra_whitespaces does again). Named entities beyond
 * the five XML ones are left as written. */
static size_t unescape_html(char *s)
{
    static const struct { const char *name; char c; } ent[] = {
        {"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    size_t o = 0;
    for (size_t i = 0; s[i];) {
        if (s[i] == '&') {
            int done = 0;
            for (size_t e = 0; e < sizeof ent / sizeof ent[0] && !done; e++) {
                size_t n = strlen(ent[e].name);
                if (strncmp(s + i + 1, ent[e].name, n) == 0) {
                    s[o++] = ent[e].c;
                    i += 1 + n;
                    done = 1;
                }
            }
            if (!done && s[i + 1] == '#') {
                /* &#NNN; or &#xHH; -> UTF-8 */
                char *end;
                int hex = s[i + 2] == 'x' || s[i + 2] == 'X';
                unsigned long cp = strtoul(s + i + 2 + hex, &end, hex ? 16 : 10);
                if (end > s + i + 2 + hex && *end == ';' && cp > 0 && cp <= 0x10FFFF &&
                    !(cp >= 0xD800 && cp <= 0xDFFF)) {
                    size_t len = (size_t)(end + 1 - (s + i));
                    char u[4];
                    int k;
                    if (cp < 0x80) { u[0] = (char)cp; k = 1; }
                    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
                    else if (cp < 0x10000) { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); k = 3; }
                    else { u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); k = 4; }
                    if ((size_t)k <= len) {   /* never grows: the entity is longer */
                        memcpy(s + o, u, (size_t)k);
                        o += (size_t)k;
                        i += len;
                        done = 1;
                    }
                }
            }
            if (done)
                continue;
        }
        s[o++] = s[i++];
    }
    s[o] = '\0';
    return o;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\f' && *s != '\v')
            return 0;
    return 1;
}

/* Cleans and encodes; on success returns the tokenizer result (caller frees). */
static fb_status tokenize_full(const fb_model *m, const char *prompt, fb_tok_result *r,
                               char *err, size_t err_size)
{
    memset(r, 0, sizeof *r);
    if (!prompt) {
        set_err(err, err_size, "prompt is NULL");
        return FB_E_INVALID;
    }
    size_t len = strnlen(prompt, FB_PROMPT_MAX_BYTES + 1);
    if (len > FB_PROMPT_MAX_BYTES) {
        set_err(err, err_size, "prompt is longer than %d bytes", FB_PROMPT_MAX_BYTES);
        return FB_E_INVALID;
    }
    char *text = malloc(len + 1);
    if (!text) {
        set_err(err, err_size, "out of memory");
        return FB_E_NO_MEMORY;
    }
    memcpy(text, prompt, len + 1);
    unescape_html(text);
    len = unescape_html(text);
    if (is_blank(text)) {
        free(text);
        set_err(err, err_size, "prompt is empty");
        return FB_E_INVALID;
    }
    fb_tok_options opt = {.add_eos = 1, .max_tokens = m->cfg.text.max_tokens};
    char tmp[FB_ERR_MAX];
    int rc = fb_tok_encode(m->tok, text, len, &opt, r, tmp, sizeof tmp);
    free(text);
    if (rc != 0) {
        set_err(err, err_size, "cannot tokenize the prompt: %s", tmp);
        return FB_E_INVALID;
    }
    /* Longer prompts are cut at max_tokens (EOS kept last), as upstream's tokenizer call
     * does; fb_model_prompt_tokens() tells a client how much was cut. */
    return FB_OK;
}

fb_status fb__tokenize(const fb_model *m, const char *prompt, int32_t **ids, int *n, char *err,
                       size_t err_size)
{
    fb_tok_result r;
    fb_status st = tokenize_full(m, prompt, &r, err, err_size);
    if (st != FB_OK)
        return st;
    *ids = malloc((size_t)r.n_ids * sizeof **ids);
    if (!*ids) {
        fb_tok_result_free(&r);
        set_err(err, err_size, "out of memory");
        return FB_E_NO_MEMORY;
    }
    memcpy(*ids, r.ids, (size_t)r.n_ids * sizeof **ids);
    *n = r.n_ids;
    fb_tok_result_free(&r);
    return FB_OK;
}

fb_status fb_model_unknown_words(const fb_model *m, const char *prompt, char *out,
                                 size_t out_size, int *n_unknown)
{
    if (n_unknown)
        *n_unknown = 0;
    if (out && out_size)
        out[0] = '\0';
    if (!m || !prompt)
        return FB_E_INVALID;
    char err[FB_ERR_MAX];
    fb_tok_result r;
    fb_status st = tokenize_full(m, prompt, &r, err, sizeof err);
    if (st != FB_OK) {
        if (out && out_size)
            snprintf(out, out_size, "%s", err);
        return st;
    }
    size_t used = 0;
    for (int i = 0; i < r.n_unknown && out && out_size; i++) {
        int k = snprintf(out + used, out_size - used, "%s%s", i ? " " : "", r.unknown[i]);
        if (k < 0 || used + (size_t)k >= out_size) {
            out[out_size - 1] = '\0';
            break;
        }
        used += (size_t)k;
    }
    if (n_unknown)
        *n_unknown = r.n_unknown;
    fb_tok_result_free(&r);
    return FB_OK;
}

fb_status fb_model_prompt_tokens(const fb_model *m, const char *prompt, int *n_tokens,
                                 int *n_dropped)
{
    if (n_tokens)
        *n_tokens = 0;
    if (n_dropped)
        *n_dropped = 0;
    if (!m || !prompt)
        return FB_E_INVALID;
    char err[FB_ERR_MAX];
    fb_tok_result r;
    fb_status st = tokenize_full(m, prompt, &r, err, sizeof err);
    if (st != FB_OK)
        return st;
    if (n_tokens)
        *n_tokens = r.n_ids;
    if (n_dropped)
        *n_dropped = r.n_dropped;
    fb_tok_result_free(&r);
    return FB_OK;
}
