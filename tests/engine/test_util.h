/* tests/engine/test_util.h - tiny check macros for the engine tests: every failure prints the
 * file, line and expression and makes the test exit non-zero. */
#ifndef FLIPBOOK_TESTS_ENGINE_TEST_UTIL_H
#define FLIPBOOK_TESTS_ENGINE_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define CHECK_NEAR(a, b, tol)                                                              \
    do {                                                                                   \
        double a_ = (double)(a), b_ = (double)(b);                                         \
        if (!(fabs(a_ - b_) <= (tol))) {                                                   \
            fprintf(stderr, "%s:%d: %s = %.9g, expected %s = %.9g (tol %g)\n", __FILE__,   \
                    __LINE__, #a, a_, #b, b_, (double)(tol));                              \
            t_failures++;                                                                  \
        }                                                                                  \
    } while (0)

#define TEST_EXIT()                                                          \
    do {                                                                     \
        if (t_failures) {                                                    \
            fprintf(stderr, "%d check(s) failed\n", t_failures);             \
            return 1;                                                        \
        }                                                                    \
        printf("ok\n");                                                      \
        return 0;                                                            \
    } while (0)

#endif
