/* tests/fuzz/replay_main.c - a driver for fuzz targets when libFuzzer is not available.
 *
 * Runs every file of the corpus folder given as argv[1] through LLVMFuzzerTestOneInput(), then a
 * fixed number of deterministic mutations of each (byte flips, truncations, insertions), so the
 * target's code is still exercised by a plain gcc build. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void run_mutations(const uint8_t *seed, size_t size, int rounds) {
    size_t cap = size + 64;
    uint8_t *buf = malloc(cap);
    if (!buf) return;
    for (int r = 0; r < rounds; r++) {
        size_t n = size;
        memcpy(buf, seed, size);
        int edits = 1 + (int)(rng_next() % 8);
        for (int e = 0; e < edits; e++) {
            uint64_t k = rng_next();
            switch (k % 4) {
            case 0: if (n) buf[rng_next() % n] ^= (uint8_t)(1u << (k >> 8) % 8); break;
            case 1: if (n) buf[rng_next() % n] = (uint8_t)(k >> 16); break;
            case 2: if (n) n = rng_next() % n; break;
            case 3: if (n < cap) { size_t at = n ? rng_next() % n : 0;
                        memmove(buf + at + 1, buf + at, n - at); buf[at] = (uint8_t)k; n++; }
                    break;
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    free(buf);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]); return 2; }
    DIR *d = opendir(argv[1]);
    if (!d) { perror(argv[1]); return 2; }
    int files = 0;
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], ent->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        uint8_t *buf = malloc(1 << 20);
        size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
        fclose(f);
        if (!buf) continue;
        LLVMFuzzerTestOneInput(buf, n);
        run_mutations(buf, n, 2000);
        free(buf);
        files++;
    }
    closedir(d);
    printf("replayed %d corpus files with 2000 mutations each\n", files);
    return files > 0 ? 0 : 1;
}
