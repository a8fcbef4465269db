/* tests/engine/alloc_count.h - counts the heap allocations of a test binary linked with
 * -Wl,--wrap=malloc,calloc,realloc,aligned_alloc,posix_memalign (tests/engine/CMakeLists.txt),
 * so a test can assert that a stream's hot loop allocates nothing. Include it in exactly one
 * file of that binary: it defines the wrappers. Thread-safe (atomic counter).
 */
#ifndef FLIPBOOK_TESTS_ENGINE_ALLOC_COUNT_H
#define FLIPBOOK_TESTS_ENGINE_ALLOC_COUNT_H
#include <stddef.h>

static volatile long n_allocs;
void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);
int __real_posix_memalign(void **p, size_t al, size_t n);

void *__wrap_malloc(size_t n)
{
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b)
{
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n)
{
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t al, size_t n)
{
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_aligned_alloc(al, n);
}
int __wrap_posix_memalign(void **p, size_t al, size_t n)
{
    __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
    return __real_posix_memalign(p, al, n);
}

#endif
