/* An opportunistic second thread for the decode step's matrix-vector products (see _gemv.c).
 *
 * pe_stack_rows runs on the decode loop's thread, and one token's products are memory-bound: one
 * core streams about half of what two cores stream together. With the pool on, the output rows
 * of each large product are handed out in chunks to the calling thread and to one helper thread
 * that runs at the lowest scheduling priority (SCHED_IDLE on Linux). The helper takes only what
 * the second core has spare (the streaming codec decoder keeps its priority there), and it never
 * holds the caller up: a chunk the helper claimed but has not finished within STEAL_NS is
 * computed by the caller, and the helper's late rows are dropped. Each row is computed by the
 * same function whichever thread runs it, so the output is bit-identical with the pool on or off.
 *
 * One job at a time; the caller owns the pool between pe_pool_begin and pe_pool_end.
 *  - The caller writes the job (row function, its context copied in, output pointer) under a
 *    sequence lock, sets every chunk's state to (job id, FREE) and publishes the id.
 *  - Both threads draw chunk numbers from one counter and claim a chunk by CAS FREE -> theirs.
 *  - The helper computes a chunk into the pool's row buffer (never into the caller's output),
 *    then CAS HELPER -> DONE; when that CAS fails the caller has stolen the chunk.
 *  - The caller, out of chunks, settles them all: FREE ones it computes, DONE ones it copies from
 *    the row buffer, HELPER ones it waits for (at most STEAL_NS) and then steals (CAS HELPER ->
 *    STOLEN) and computes. No wait is longer than STEAL_NS plus a chunk, however the helper is
 *    scheduled.
 * After a job no chunk is FREE or HELPER, so a late helper can claim nothing of it. The helper
 * reads only its copy of the job, the pool's scratch buffer (activations; never freed) and the
 * weights the context points to, and writes only the pool's row buffer: pe_pool_quiesce waits
 * until it reads nothing, and the Python side calls it before those weights can be freed.
 */
#define _GNU_SOURCE  /* SCHED_IDLE, pthread_setname_np */
#include "_gemv.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif


#define POOL_CHUNK 64               /* output rows per claim */
#define POOL_MAX_CHUNKS 1024
#define POOL_CTX_BYTES 128
#define POOL_SCRATCH_BYTES (1 << 20)
#define SPIN_IDLE_NS 300000L        /* helper: spin this long for the next job, then sleep */
#define STEAL_NS 30000L             /* caller: wait this long for a claimed chunk, then do it */

enum { ST_FREE = 0, ST_MAIN, ST_HELPER, ST_DONE, ST_STOLEN };

static struct {
    pe_rows_fn fn;
    unsigned char ctx[POOL_CTX_BYTES];
    int n, chunks;
} job;

static _Atomic uint64_t seq;        /* job id; odd while the job is being written */
static _Atomic uint64_t state[POOL_MAX_CHUNKS];
static _Atomic int next_chunk;
static _Atomic int busy;            /* a caller owns the pool */
static _Atomic int enabled;
static _Atomic int active;          /* the helper is inside a job */
static _Atomic int sleeping;
static _Atomic long delay_ns;       /* tests: the helper pauses this long inside each chunk */
static _Atomic long helper_chunks, stolen_chunks;
static int started;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static _Alignas(64) unsigned char scratch[POOL_SCRATCH_BYTES];
static _Alignas(64) float rows[POOL_MAX_CHUNKS * POOL_CHUNK];  /* the helper's output rows */

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline uint64_t st(uint64_t id, int s) { return id << 3 | (uint64_t)s; }

static void rows_of(int c, int n, int *n0, int *n1) {
    *n0 = c * POOL_CHUNK;
    *n1 = *n0 + POOL_CHUNK < n ? *n0 + POOL_CHUNK : n;
}

static void helper_job(uint64_t id) {
    pe_rows_fn fn = job.fn;
    unsigned char ctx[POOL_CTX_BYTES];
    memcpy(ctx, job.ctx, sizeof ctx);
    int n = job.n, chunks = job.chunks;
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&seq, memory_order_relaxed) != id) return;  /* torn: a newer job */
    for (;;) {
        int c = atomic_fetch_add_explicit(&next_chunk, 1, memory_order_relaxed);
        if (c >= chunks) return;
        uint64_t expect = st(id, ST_FREE);
        if (!atomic_compare_exchange_strong(&state[c], &expect, st(id, ST_HELPER))) continue;
        int n0, n1;
        rows_of(c, n, &n0, &n1);
        fn(ctx, n0, n1, rows + n0);
        long d = atomic_load_explicit(&delay_ns, memory_order_relaxed);
        if (d > 0) {
            struct timespec ts = {d / 1000000000L, d % 1000000000L};
            nanosleep(&ts, NULL);
        }
        expect = st(id, ST_HELPER);
        if (atomic_compare_exchange_strong_explicit(&state[c], &expect, st(id, ST_DONE), memory_order_release,
                                                    memory_order_relaxed))
            atomic_fetch_add_explicit(&helper_chunks, 1, memory_order_relaxed);  /* else: stolen */
    }
}

static void *helper_main(void *arg) {
    (void)arg;
#ifdef SCHED_IDLE
    struct sched_param p = {0};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &p);
#endif
#ifdef __linux__
    pthread_setname_np(pthread_self(), "pe-decode-help");
#endif
    uint64_t seen = atomic_load(&seq) & ~(uint64_t)1;
    int64_t idle_since = 0;
    unsigned spins = 0;
    for (;;) {
        uint64_t id = atomic_load_explicit(&seq, memory_order_acquire);
        if (id == seen || (id & 1)) {
            CPU_RELAX();
            if (++spins % 64) continue;
            int64_t t = now_ns();
            if (!idle_since) idle_since = t;
            if (t - idle_since < SPIN_IDLE_NS) continue;
            pthread_mutex_lock(&mu);
            atomic_store(&sleeping, 1);
            while (atomic_load(&seq) == seen) pthread_cond_wait(&cv, &mu);
            atomic_store(&sleeping, 0);
            pthread_mutex_unlock(&mu);
            idle_since = 0;
            continue;
        }
        idle_since = 0;
        atomic_store(&active, 1);
        helper_job(id);
        seen = id;
        atomic_store(&active, 0);
    }
    return NULL;
}

static void after_fork_child(void) {
    /* The helper does not exist in a forked child: the pool starts over, off. */
    started = 0;
    atomic_store(&enabled, 0);
    atomic_store(&busy, 0);
    atomic_store(&active, 0);
    atomic_store(&sleeping, 0);
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&cv, NULL);
}

/* Turn the helper on (1) or off (0); it is started on first use. Returns whether it is on. */
int pe_pool_enable(int on) {
    if (on && !started) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, helper_main, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) return 0;
        static int hooked;
        if (!hooked) hooked = pthread_atfork(NULL, NULL, after_fork_child) == 0;
        started = 1;
    }
    atomic_store(&enabled, on && started);
    return atomic_load(&enabled);
}

/* Wait until the helper reads nothing (before the weights of a finished job are freed). */
void pe_pool_quiesce(void) {
    while (atomic_load(&active)) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
}

/* Tests: make the helper pause inside each chunk (so the caller steals), and read the counters. */
void pe_pool_test_delay(long ns) { atomic_store(&delay_ns, ns); }
long pe_pool_helper_chunks(void) { return atomic_load(&helper_chunks); }
long pe_pool_stolen_chunks(void) { return atomic_load(&stolen_chunks); }

/* 1 when this thread now owns the pool (then pe_pool_end), 0 when off or owned by another caller. */
int pe_pool_begin(void) {
    int free_ = 0;
    return atomic_load(&enabled) && atomic_compare_exchange_strong(&busy, &free_, 1);
}

void pe_pool_end(void) { atomic_store_explicit(&busy, 0, memory_order_release); }

/* The owner's buffer for data the helper reads (activations): never freed, so a late helper
 * reads stale numbers at worst, never freed memory. */
void *pe_pool_scratch(size_t bytes) { return bytes <= POOL_SCRATCH_BYTES ? scratch : NULL; }

static void run_chunk(pe_rows_fn fn, const void *ctx, int c, int n, float *y) {
    int n0, n1;
    rows_of(c, n, &n0, &n1);
    fn(ctx, n0, n1, y + n0);
}

/* y[0..n) = fn's rows, shared with the helper. The owner only (after pe_pool_begin). */
void pe_pool_rows(pe_rows_fn fn, const void *ctx, size_t ctx_bytes, int n, float *y) {
    int chunks = (n + POOL_CHUNK - 1) / POOL_CHUNK;
    if (chunks < 2 || chunks > POOL_MAX_CHUNKS || ctx_bytes > POOL_CTX_BYTES) {
        fn(ctx, 0, n, y);
        return;
    }
    uint64_t s = atomic_load_explicit(&seq, memory_order_relaxed), id = s + 2;
    atomic_store_explicit(&seq, s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    job.fn = fn;
    memcpy(job.ctx, ctx, ctx_bytes);
    job.n = n;
    job.chunks = chunks;
    for (int c = 0; c < chunks; c++) atomic_store_explicit(&state[c], st(id, ST_FREE), memory_order_relaxed);
    atomic_store_explicit(&next_chunk, 0, memory_order_relaxed);
    atomic_store(&seq, id);
    if (atomic_load(&sleeping)) {
        pthread_mutex_lock(&mu);
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
    for (;;) {
        int c = atomic_fetch_add_explicit(&next_chunk, 1, memory_order_relaxed);
        if (c >= chunks) break;
        uint64_t expect = st(id, ST_FREE);
        if (atomic_compare_exchange_strong(&state[c], &expect, st(id, ST_MAIN))) run_chunk(fn, ctx, c, n, y);
    }
    for (int c = 0; c < chunks; c++) {
        int64_t since = 0;
        for (unsigned spins = 0;; spins++) {
            uint64_t v = atomic_load_explicit(&state[c], memory_order_acquire), expect = v;
            int s_ = (int)(v & 7);
            if (s_ == ST_MAIN || s_ == ST_STOLEN) break;
            if (s_ == ST_DONE) {
                int n0, n1;
                rows_of(c, n, &n0, &n1);
                memcpy(y + n0, rows + n0, sizeof(float) * (size_t)(n1 - n0));
                break;
            }
            if (s_ == ST_FREE) {
                if (atomic_compare_exchange_strong(&state[c], &expect, st(id, ST_MAIN))) {
                    run_chunk(fn, ctx, c, n, y);
                    break;
                }
                continue;
            }
            if (s_ == ST_HELPER && spins % 16 == 15) {
                int64_t t = now_ns();
                if (!since) since = t;
                if (t - since >= STEAL_NS && atomic_compare_exchange_strong(&state[c], &expect, st(id, ST_STOLEN))) {
                    atomic_fetch_add_explicit(&stolen_chunks, 1, memory_order_relaxed);
                    run_chunk(fn, ctx, c, n, y);
                    break;
                }
            }
            CPU_RELAX();  /* HELPER: still working on it */
        }
    }
}
