/* tests/engine/model_util.h - variants of the golden tiny model for the engine tests: the same
 * tensors under an edited `flipbook.config` (smaller latents for fast long runs, absolute
 * positions, broken fields), written to a temporary file. Header-only. */
#ifndef FLIPBOOK_TESTS_ENGINE_MODEL_UTIL_H
#define FLIPBOOK_TESTS_ENGINE_MODEL_UTIL_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = n > 0 ? malloc((size_t)n) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *size = b ? (size_t)n : 0;
    return b;
}

/* Sets config[section][key] = value (raw JSON), or deletes it when value is NULL. */
typedef struct cfg_edit {
    const char *section, *key, *value;
} cfg_edit;

/* Writes `dst`: the tensors of `src` with its metadata config edited. When `drop_prefix` is
 * not NULL, tensors whose names start with it are left out (a file with missing weights).
 * Returns 0 or -1. */
static int clone_model(const char *src, const char *dst, const cfg_edit *edits, int n_edits,
                       const char *drop_prefix)
{
    size_t size;
    unsigned char *b = read_all(src, &size);
    if (!b || size < 8)
        return -1;
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)b[i] << (8 * i);
    char *hjson = malloc(hlen + 1);
    memcpy(hjson, b + 8, hlen);
    hjson[hlen] = '\0';
    cJSON *h = cJSON_Parse(hjson);
    free(hjson);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    cJSON *cs = cJSON_GetObjectItemCaseSensitive(md, "flipbook.config");
    cJSON *cfg = cJSON_Parse(cs->valuestring);
    for (int i = 0; i < n_edits; i++) {
        cJSON *sec = cJSON_GetObjectItemCaseSensitive(cfg, edits[i].section);
        if (!edits[i].value) {
            cJSON_DeleteItemFromObjectCaseSensitive(sec, edits[i].key);
            continue;
        }
        cJSON *v = cJSON_Parse(edits[i].value);
        if (cJSON_GetObjectItemCaseSensitive(sec, edits[i].key))
            cJSON_ReplaceItemInObjectCaseSensitive(sec, edits[i].key, v);
        else
            cJSON_AddItemToObject(sec, edits[i].key, v);
    }
    char *cfg_text = cJSON_PrintUnformatted(cfg);
    cJSON_ReplaceItemInObjectCaseSensitive(md, "flipbook.config", cJSON_CreateString(cfg_text));
    free(cfg_text);
    cJSON_Delete(cfg);
    if (drop_prefix) {
        cJSON *it = h->child;
        while (it) {
            cJSON *next = it->next;
            if (strncmp(it->string, drop_prefix, strlen(drop_prefix)) == 0)
                cJSON_DeleteItemFromObjectCaseSensitive(h, it->string);
            it = next;
        }
    }
    char *out = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t olen = strlen(out), padded = (olen + 7) / 8 * 8;
    FILE *f = fopen(dst, "wb");
    int rc = -1;
    if (f) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)(padded >> (8 * i));
        rc = fwrite(len8, 1, 8, f) == 8 && fwrite(out, 1, olen, f) == olen ? 0 : -1;
        for (size_t i = olen; i < padded && rc == 0; i++)
            rc = fputc(' ', f) == ' ' ? 0 : -1;
        size_t data = size - 8 - hlen;
        if (rc == 0 && fwrite(b + 8 + hlen, 1, data, f) != data)
            rc = -1;
        if (fclose(f) != 0)
            rc = -1;
    }
    free(out);
    free(b);
    return rc;
}

/* A temporary file name in TMPDIR (or /tmp) unique to this process. */
static void temp_path(char *buf, size_t n, const char *tag)
{
    const char *dir = getenv("TMPDIR");
    snprintf(buf, n, "%s/flipbook-test-%ld-%s.safetensors", dir && dir[0] ? dir : "/tmp",
             (long)getpid(), tag);
}

#endif
