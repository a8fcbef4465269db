/* Config parsing and validation: the example of docs/model-format.md parses to the expected
 * values and derived sizes; then one bad field at a time (missing, wrong type, out of range,
 * inconsistent with another field, unknown key) must be refused with a message that names it. */
#include <cjson/cJSON.h>

#include "engine/config.h"
#include "tests/engine/test_util.h"

static const char *base_json =
    "{\"dit\": {\"patch_size\": [1, 2, 2], \"in_dim\": 16, \"out_dim\": 16, \"dim\": 1536,"
    " \"ffn_dim\": 8960, \"freq_dim\": 256, \"text_dim\": 4096, \"text_len\": 512,"
    " \"num_heads\": 12, \"num_layers\": 30, \"qk_norm\": true, \"cross_attn_norm\": true,"
    " \"eps\": 1e-6},"
    " \"text_encoder\": {\"arch\": \"umt5\", \"vocab\": 256384, \"dim\": 4096, \"dim_attn\": 4096,"
    " \"dim_ffn\": 10240, \"num_heads\": 64, \"num_layers\": 24, \"num_buckets\": 32,"
    " \"max_distance\": 128, \"shared_pos\": false, \"eps\": 1e-6, \"max_tokens\": 512},"
    " \"vae\": {\"arch\": \"taehv\", \"latent_channels\": 16, \"image_channels\": 3,"
    " \"decoder_channels\": [256, 128, 64, 64], \"encoder_channels\": 64,"
    " \"decoder_time_upscale\": [false, true, true], \"decoder_space_upscale\": [true, true, true],"
    " \"encoder_time_downscale\": [true, true, false], \"frames_to_trim\": 3, \"patch_size\": 1},"
    " \"sampler\": {\"num_train_timesteps\": 1000, \"shift\": 5.0, \"steps\": [1000, 750, 500, 250],"
    " \"warp\": true, \"context_t\": 0},"
    " \"stream\": {\"chunk_frames\": 3, \"anchor_frames\": 3, \"window_frames\": 9,"
    " \"positions\": \"window\", \"latent_height\": 60, \"latent_width\": 104, \"fps\": 16},"
    " \"tokenizer\": {\"tensor\": \"tokenizer.spm\"}}";

/* Sets (or with value NULL deletes) "section.key" in a copy of the base config and returns the
 * parse status; err gets the message, cfg the parsed config. */
static int parse_mutated_into(const char *path, const char *value, fb_config *cfg, char *err,
                              size_t err_size)
{
    cJSON *root = cJSON_Parse(base_json);
    char sec[64], key[64];
    const char *dot = strchr(path, '.');
    if (dot) {
        snprintf(sec, sizeof sec, "%.*s", (int)(dot - path), path);
        snprintf(key, sizeof key, "%s", dot + 1);
    } else {
        snprintf(sec, sizeof sec, "%s", path);
        key[0] = '\0';
    }
    cJSON *parent = key[0] ? cJSON_GetObjectItemCaseSensitive(root, sec) : root;
    const char *name = key[0] ? key : sec;
    if (!value) {
        cJSON_DeleteItemFromObjectCaseSensitive(parent, name);
    } else {
        cJSON *v = cJSON_Parse(value);
        if (!v) {
            fprintf(stderr, "bad test value %s\n", value);
            exit(2);
        }
        if (cJSON_GetObjectItemCaseSensitive(parent, name))
            cJSON_ReplaceItemInObjectCaseSensitive(parent, name, v);
        else
            cJSON_AddItemToObject(parent, name, v);
    }
    char *json = cJSON_PrintUnformatted(root);
    int rc = fb_config_parse(json, cfg, err, err_size);
    free(json);
    cJSON_Delete(root);
    return rc;
}

static int parse_mutated(const char *path, const char *value, char *err, size_t err_size)
{
    fb_config cfg;
    return parse_mutated_into(path, value, &cfg, err, err_size);
}

int main(void)
{
    char err[512];
    fb_config cfg;
    CHECK_MSG(fb_config_parse(base_json, &cfg, err, sizeof err) == 0, "%s", err);
    CHECK(cfg.dit.dim == 1536 && cfg.dit.num_heads == 12 && cfg.dit.num_layers == 30);
    CHECK(cfg.dit.patch_size[0] == 1 && cfg.dit.patch_size[2] == 2);
    CHECK(cfg.dit.qk_norm == 1 && cfg.dit.eps == 1e-6f);
    CHECK(strcmp(cfg.text.arch, "umt5") == 0 && cfg.text.vocab == 256384);
    CHECK(cfg.vae.n_stages == 4 && cfg.vae.decoder_channels[3] == 64);
    CHECK(cfg.vae.decoder_time_upscale[0] == 0 && cfg.vae.decoder_time_upscale[2] == 1);
    CHECK(cfg.sampler.n_steps == 4 && cfg.sampler.steps[3] == 250.0f && cfg.sampler.warp);
    CHECK(cfg.sampler.guidance == 1.0f);   /* absent: off */
    CHECK(cfg.vae.warm_start == 0);        /* absent: off */
    CHECK(cfg.stream.positions == FB_POS_WINDOW && cfg.stream.fps == 16.0);
    CHECK(strcmp(cfg.tokenizer_tensor, "tokenizer.spm") == 0);
    /* derived sizes of Wan2.1 1.3B with TAEW2.1 */
    CHECK(fb_config_head_dim(&cfg) == 128);
    CHECK(fb_config_tokens_per_frame(&cfg) == 1560);
    CHECK(fb_config_latent_frame_floats(&cfg) == 16 * 60 * 104);
    CHECK(fb_config_frame_width(&cfg) == 832 && fb_config_frame_height(&cfg) == 480);
    CHECK(fb_config_frames_per_latent(&cfg) == 4);
    CHECK(fb_config_frames_in_chunk(&cfg, 0) == 9 && fb_config_frames_in_chunk(&cfg, 1) == 12);
    CHECK(fb_config_max_frames_per_chunk(&cfg) == 12);
    CHECK(fb_config_attended_frames(&cfg) == 15);

    /* Optional fields get their defaults. */
    CHECK(parse_mutated("tokenizer", NULL, err, sizeof err) == 0);
    CHECK(parse_mutated("dit.eps", NULL, err, sizeof err) == 0);
    CHECK(parse_mutated("stream.positions", "\"absolute\"", err, sizeof err) == 0);
    {
        /* classifier-free guidance: default 1 (off), any scale in [1, 20] */
        fb_config g;
        CHECK_MSG(parse_mutated_into("sampler.guidance", "3.5", &g, err, sizeof err) == 0, "%s",
                  err);
        CHECK(g.sampler.guidance == 3.5f);
        CHECK(parse_mutated_into("sampler.guidance", "1", &g, err, sizeof err) == 0 &&
              g.sampler.guidance == 1.0f);
        CHECK(parse_mutated_into("sampler.guidance", "20", &g, err, sizeof err) == 0 &&
              g.sampler.guidance == 20.0f);
    }
    {
        /* vae.warm_start: an optional boolean; the frame counts per chunk do not change */
        fb_config g;
        CHECK_MSG(parse_mutated_into("vae.warm_start", "true", &g, err, sizeof err) == 0, "%s",
                  err);
        CHECK(g.vae.warm_start == 1);
        CHECK(fb_config_frames_in_chunk(&g, 0) == 9 && fb_config_frames_in_chunk(&g, 1) == 12);
        CHECK(parse_mutated_into("vae.warm_start", "false", &g, err, sizeof err) == 0 &&
              g.vae.warm_start == 0);
        CHECK(parse_mutated_into("vae.warm_start", NULL, &g, err, sizeof err) == 0 &&
              g.vae.warm_start == 0);
        /* a config built in C must hold 0 or 1 */
        g.vae.warm_start = 2;
        CHECK(fb_config_validate(&g, err, sizeof err) == -1 && strstr(err, "vae.warm_start"));
        g.vae.warm_start = 1;
        CHECK_MSG(fb_config_validate(&g, err, sizeof err) == 0, "%s", err);
    }
    /* window -1 = unbounded: only with absolute positions, then what the RoPE table allows */
    CHECK(parse_mutated("stream.window_frames", "-1", err, sizeof err) == -1 &&
          strstr(err, "stream.window_frames"));
    {
        cJSON *root = cJSON_Parse(base_json);
        cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stream");
        cJSON_ReplaceItemInObjectCaseSensitive(st, "positions", cJSON_CreateString("absolute"));
        cJSON_ReplaceItemInObjectCaseSensitive(st, "window_frames", cJSON_CreateNumber(-1));
        char *json = cJSON_PrintUnformatted(root);
        CHECK_MSG(fb_config_parse(json, &cfg, err, sizeof err) == 0, "%s", err);
        CHECK(cfg.stream.window_frames == 1017 && cfg.stream.positions == FB_POS_ABSOLUTE);
        free(json);
        cJSON_Delete(root);
        CHECK(fb_config_parse(base_json, &cfg, err, sizeof err) == 0);
    }

    static const struct {
        const char *path, *value, *expect;
    } bad[] = {
        {"dit", NULL, "dit: missing section"},
        {"dit", "[1]", "dit: must be an object"},
        {"vae", NULL, "vae: missing section"},
        {"extra", "{}", "extra: unknown section"},
        {"dit.dim", NULL, "dit.dim: missing"},
        {"dit.dim", "\"1536\"", "dit.dim: must be an integer"},
        {"dit.dim", "15.5", "dit.dim: must be an integer"},
        {"dit.dim", "-3", "dit.dim: must be in"},
        {"dit.num_heads", "7", "dit.num_heads: must divide dit.dim"},
        {"dit.num_heads", "512", "dit.num_heads: head dim"},
        {"dit.patch_size", "[1, 2]", "dit.patch_size: must have 3 entries"},
        {"dit.patch_size", "[2, 2, 2]", "dit.patch_size[0]"},
        {"dit.patch_size", "[1, \"a\", 2]", "dit.patch_size[1]: must be an integer"},
        {"dit.in_dim", "8", "dit.in_dim: must equal vae.latent_channels"},
        {"dit.out_dim", "8", "dit.out_dim"},
        {"dit.text_dim", "1024", "dit.text_dim: must equal text_encoder.dim"},
        {"dit.freq_dim", "255", "dit.freq_dim: must be even"},
        {"dit.qk_norm", "1", "dit.qk_norm: must be true or false"},
        {"dit.eps", "\"small\"", "dit.eps: must be a number"},
        {"dit.window", "1", "dit.window: unknown key"},
        {"text_encoder.arch", "\"bert\"", "text_encoder.arch"},
        {"text_encoder.arch", "3", "text_encoder.arch: must be a string"},
        {"text_encoder.num_heads", "3", "text_encoder.num_heads"},
        {"text_encoder.max_tokens", "1000", "text_encoder.max_tokens"},
        {"text_encoder.shared_pos", "true", "text_encoder.shared_pos"},
        {"text_encoder.vocab", NULL, "text_encoder.vocab: missing"},
        {"vae.arch", "\"wan\"", "vae.arch"},
        {"vae.image_channels", "4", "vae.image_channels"},
        {"vae.decoder_channels", "[256]", "vae.decoder_channels: must have 2 to"},
        {"vae.decoder_time_upscale", "[true, true]", "vae.decoder_time_upscale"},
        {"vae.decoder_space_upscale", "[true, 1, true]", "vae.decoder_space_upscale[1]"},
        {"vae.frames_to_trim", "12", "vae.frames_to_trim"},
        {"vae.warm_start", "1", "vae.warm_start: must be true or false"},
        {"vae.warm_start", "\"true\"", "vae.warm_start: must be true or false"},
        {"vae.warm_start", "null", "vae.warm_start: must be true or false"},
        {"vae.warmstart", "true", "vae.warmstart: unknown key"},
        {"sampler.steps", "[]", "sampler.steps: must have 1 to"},
        {"sampler.steps", "[1000, 1000]", "sampler.steps[1]: steps must decrease"},
        {"sampler.steps", "[2000]", "sampler.steps[0]"},
        {"sampler.steps", "[1000, 750.5]", "sampler.steps[1]"},
        {"sampler.steps", "\"1000\"", "sampler.steps: must be an array"},
        {"sampler.shift", NULL, "sampler.shift: missing"},
        {"sampler.shift", "0", "sampler.shift: must be in"},
        {"sampler.context_t", "300", "sampler.context_t"},
        {"sampler.guidance", "0.5", "sampler.guidance: must be in [1, 20]"},
        {"sampler.guidance", "25", "sampler.guidance: must be in [1, 20]"},
        {"sampler.guidance", "\"3\"", "sampler.guidance: must be a number"},
        {"stream.positions", "\"relative\"", "stream.positions"},
        {"stream.latent_height", "61", "stream.latent_height: must be a multiple"},
        {"stream.latent_width", "0", "stream.latent_width: must be in"},
        {"stream.anchor_frames", "-1", "stream.anchor_frames: must be in"},
        {"stream.window_frames", "-2", "stream.window_frames: must be in"},
        {"stream.chunk_frames", "0", "stream.chunk_frames: must be in"},
        {"stream.window_frames", "1020", "stream.window_frames"},
        {"stream.fps", "0", "stream.fps"},
        {"stream.chunk_frames", NULL, "stream.chunk_frames: missing"},
        {"tokenizer.tensor", "\"\"", "tokenizer.tensor"},
        {"tokenizer.file", "\"x\"", "tokenizer.file: unknown key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = parse_mutated(bad[i].path, bad[i].value, err, sizeof err);
        CHECK_MSG(rc == -1, "%s = %s was accepted", bad[i].path,
                  bad[i].value ? bad[i].value : "(deleted)");
        CHECK_MSG(strstr(err, bad[i].expect) != NULL, "%s = %s: message '%s' lacks '%s'",
                  bad[i].path, bad[i].value ? bad[i].value : "(deleted)", err, bad[i].expect);
        CHECK_MSG(strncmp(err, "flipbook.config: ", 17) == 0, "message '%s' lacks the prefix",
                  err);
    }

    /* Not JSON, not an object, NULL. */
    CHECK(fb_config_parse("{\"dit\": ", &cfg, err, sizeof err) == -1 && strstr(err, "JSON"));
    CHECK(fb_config_parse("[1, 2]", &cfg, err, sizeof err) == -1 && strstr(err, "object"));
    CHECK(fb_config_parse(NULL, &cfg, err, sizeof err) == -1);
    /* A tiny error buffer is never overrun. */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    CHECK(fb_config_parse("[]", &cfg, tiny, 4) == -1 && tiny[3] == '\0' && tiny[4] == 'x');
    TEST_EXIT();
}
