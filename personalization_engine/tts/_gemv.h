/* Shared by the native kernels' sources (_gemv.c: the products; _step.c: one decode step of a
 * stack; _pool.c: the helper thread; _snake.c: the codec's SnakeBeta). Built together by
 * personalization_engine/tts/_native.py. */
#ifndef PE_GEMV_H
#define PE_GEMV_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define PE_AVX2 1
#else
#define PE_AVX2 0
#endif

#define QK 32

/* VNNI (AVX-VNNI, or AVX512-VNNI with VL): one vpdpbusd for the byte products summed by four.
 * Bit-identical to the AVX2 pair vpmaddubsw + vpmaddwd here: its int16 pair sums cannot saturate
 * (q4 codes 0..15 or |q8| <= 127, times activations in -127..127: at most 2 * 127 * 127). */
#if PE_AVX2 && (defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__)))
#define PE_VNNI 1
#else
#define PE_VNNI 0
#endif

/* AVX-512 (F, BW, VL, VNNI): the q4 products two blocks per instruction (dot_q4, dot_q4_x4). */
#if PE_VNNI && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define PE_AVX512 1
#else
#define PE_AVX512 0
#endif

#if PE_AVX2
/* int32 lane i = sum over j < 4 of u[4i + j] * s[4i + j] (u unsigned, s signed bytes). */
static inline __m256i pe_dot4(__m256i u, __m256i s) {
#if PE_VNNI && defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
#elif PE_VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* _gemv.c (layouts described there) */
void quant_act(const float *x, int K, int8_t *xq, float *dx, float *sx);
float dot_q4(const uint8_t *w, const uint16_t *d, const int8_t *xq, const float *dx, const float *sx, int nb);
float dot_q8(const int8_t *w, const uint16_t *d, const int8_t *xq, const float *dx, int nb);
float dot_bf16(const uint16_t *w, const float *x, int k);

/* _pool.c: an opportunistic second thread for the rows of one product */
typedef void (*pe_rows_fn)(const void *ctx, int n0, int n1, float *out);
int pe_pool_begin(void);
void pe_pool_end(void);
void *pe_pool_scratch(size_t bytes);
void pe_pool_rows(pe_rows_fn fn, const void *ctx, size_t ctx_bytes, int n, float *y);

#endif
