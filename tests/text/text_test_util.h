/* tests/text/text_test_util.h - check macros and helpers shared by the text-encoder, tokenizer
 * and TAEHV tests: every failed check prints file, line and expression and makes the test
 * exit non-zero; SKIP (exit 77) when optional golden data is absent. */
#ifndef FLIPBOOK_TESTS_TEXT_TEST_UTIL_H
#define FLIPBOOK_TESTS_TEXT_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int t_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            t_failures++;                                                            \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            t_failures++;                                                            \
        }                                                                            \
    } while (0)

#define TEST_EXIT()                                              \
    do {                                                         \
        if (t_failures) {                                        \
            fprintf(stderr, "%d check(s) failed\n", t_failures); \
            return 1;                                            \
        }                                                        \
        printf("ok\n");                                          \
        return 0;                                                \
    } while (0)

#define TEST_SKIP_CODE 77

/* Whole file into a malloc'd buffer (NUL-terminated for convenience), or NULL. */
static inline unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) { fclose(f); return NULL; }
    unsigned char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = 0; *size = (size_t)n; }
    return buf;
}

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Compares n floats; prints the worst absolute and relative error. The check passes when
 * every |got - want| <= atol + rtol * |want|. Returns 0 on pass. */
static inline int compare_f32(const char *what, const float *got, const float *want, size_t n,
                              double atol, double rtol) {
    double max_abs = 0, max_rel = 0, ref_max = 0;
    size_t worst = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double r = d / (fabs((double)want[i]) + 1e-12);
        if (!(d <= atol + rtol * fabs((double)want[i]))) {
            if (bad == 0) worst = i;
            bad++;
        }
        if (d > max_abs || d != d) { max_abs = d; if (!bad) worst = i; }
        if (r > max_rel && fabs((double)want[i]) > 1e-3) max_rel = r;
        if (fabs((double)want[i]) > ref_max) ref_max = fabs((double)want[i]);
    }
    printf("%-34s n=%-8zu max_abs=%.3g max_rel=%.3g (|ref|max %.3g)%s\n", what, n, max_abs,
           max_rel, ref_max, bad ? "  FAIL" : "");
    if (bad) {
        fprintf(stderr, "%s: %zu of %zu values off; first at %zu: got %.9g want %.9g\n", what,
                bad, n, worst, (double)got[worst], (double)want[worst]);
        t_failures++;
        return -1;
    }
    return 0;
}

#endif
