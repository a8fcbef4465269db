/* kernels/cpu/kctx.c - the CPU execution context: a small pthread pool and per-thread scratch.
 *
 * A job is published under the mutex with a new generation number; sleeping workers wake on
 * the condition variable, take tasks from an atomic counter until none are left, and report
 * back. The calling thread takes tasks too (it is thread 0), so a context of n threads starts
 * n - 1 workers. Sleeping on a condvar costs a few microseconds per op at wake-up, negligible
 * next to the DiT's ops (milliseconds each) and kinder to a shared 2-core machine than
 * spinning.
 */
#include "kernels/cpu/cpu_internal.h"

#include <cblas.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    fb_kctx *k;
    int id;
} worker_arg;

static void run_tasks(fb_kctx *k, int thread)
{
    for (;;) {
        int t = atomic_fetch_add_explicit(&k->next_task, 1, memory_order_relaxed);
        if (t >= k->n_tasks)
            break;
        k->fn(k->arg, t, thread);
    }
}

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    fb_kctx *k = wa.k;
    uint64_t seen = 0;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (k->generation == seen && !k->stop)
            pthread_cond_wait(&k->cv_work, &k->mu);
        if (k->stop)
            break;
        seen = k->generation;
        pthread_mutex_unlock(&k->mu);
        run_tasks(k, wa.id);
        pthread_mutex_lock(&k->mu);
        if (--k->workers_busy == 0)
            pthread_cond_signal(&k->cv_done);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

int fb_kctx_init(fb_kctx **out, int n_threads, char *err, size_t err_size)
{
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256)
        n_threads = 256;
    fb_kctx *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, err_size, "kernels: out of memory creating the context");
        return -1;
    }
    k->n_threads = n_threads;
    k->attn_stride = (size_t)FB_ATTN_BQ * FB_ATTN_BK + (size_t)FB_ATTN_BQ * FB_ATTN_MAX_HEAD_DIM +
                     2 * FB_ATTN_BQ + 16;
    k->attn_scratch = aligned_alloc(64, ((k->attn_stride * (size_t)n_threads * sizeof(float)) + 63) /
                                            64 * 64);
    k->lin_stride = (size_t)FB_LINEAR_KC * FB_LINEAR_NR_MAX;
    k->lin_scratch = aligned_alloc(64, k->lin_stride * (size_t)n_threads * sizeof(float));
    k->workers = n_threads > 1 ? calloc((size_t)n_threads - 1, sizeof(pthread_t)) : NULL;
    if (!k->attn_scratch || !k->lin_scratch || (n_threads > 1 && !k->workers)) {
        free(k->attn_scratch);
        free(k->lin_scratch);
        free(k->workers);
        free(k);
        snprintf(err, err_size, "kernels: out of memory creating the context");
        return -1;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv_work, NULL);
    pthread_cond_init(&k->cv_done, NULL);
    atomic_init(&k->next_task, 0);
    /* GEMMs are split over our own threads (see kernels.h): OpenBLAS itself stays serial. */
    openblas_set_num_threads(1);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        int rc = -1;
        if (wa) {
            wa->k = k;
            wa->id = i;
            rc = pthread_create(&k->workers[i - 1], NULL, worker_main, wa);
            if (rc != 0)
                free(wa);
        }
        if (rc != 0) {
            k->n_threads = i;   /* workers 1..i-1 exist */
            fb_kctx_free(k);
            snprintf(err, err_size, "kernels: cannot start worker thread %d of %d", i, n_threads);
            return -1;
        }
    }
    *out = k;
    return 0;
}

void fb_kctx_free(fb_kctx *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->stop = 1;
    pthread_cond_broadcast(&k->cv_work);
    pthread_mutex_unlock(&k->mu);
    for (int i = 1; i < k->n_threads; i++)
        pthread_join(k->workers[i - 1], NULL);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv_work);
    pthread_cond_destroy(&k->cv_done);
    free(k->workers);
    free(k->attn_scratch);
    free(k->lin_scratch);
    free(k);
}

int fb_kctx_n_threads(const fb_kctx *k)
{
    return k->n_threads;
}

void fb_kctx_parallel(fb_kctx *k, int n_tasks, fb_task_fn fn, void *arg)
{
    if (n_tasks <= 0)
        return;
    if (k->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    pthread_mutex_lock(&k->mu);
    FB_KASSERT(k->workers_busy == 0);   /* not reentrant */
    k->fn = fn;
    k->arg = arg;
    k->n_tasks = n_tasks;
    atomic_store_explicit(&k->next_task, 0, memory_order_relaxed);
    k->workers_busy = k->n_threads - 1;
    k->generation++;
    pthread_cond_broadcast(&k->cv_work);
    pthread_mutex_unlock(&k->mu);

    run_tasks(k, 0);

    pthread_mutex_lock(&k->mu);
    while (k->workers_busy > 0)
        pthread_cond_wait(&k->cv_done, &k->mu);
    pthread_mutex_unlock(&k->mu);
}

typedef struct {
    fb_range_fn fn;
    void *arg;
    size_t n, per;
} range_job;

static void range_task(void *p, int task, int thread)
{
    (void)thread;
    range_job *j = p;
    size_t b = (size_t)task * j->per;
    size_t e = b + j->per < j->n ? b + j->per : j->n;
    if (b < e)
        j->fn(j->arg, b, e);
}

void fb__parallel_range(fb_kctx *k, size_t n, size_t grain, fb_range_fn fn, void *arg)
{
    if (n == 0)
        return;
    if (grain == 0)
        grain = 1;
    size_t parts = n / grain;
    size_t max_parts = (size_t)k->n_threads * 4;  /* a few per thread evens out stragglers */
    if (parts > max_parts)
        parts = max_parts;
    if (parts <= 1 || k->n_threads == 1) {
        fn(arg, 0, n);
        return;
    }
    range_job j = {fn, arg, n, (n + parts - 1) / parts};
    int tasks = (int)((n + j.per - 1) / j.per);
    fb_kctx_parallel(k, tasks, range_task, &j);
}
