/* Weight-only int4 / int8 matrix-vector kernels for the talker and the code predictor on CPU.
 *
 * Built at first use by personalization_engine/tts/_native.py (cc -O3 -shared, AVX2 + FMA + F16C
 * when the CPU has them, plain C otherwise) and called through ctypes, which releases the GIL.
 *
 * Layout (row-major over the N output features, K input features, K a multiple of 32):
 *   q4: w  uint8 [N][K/2]   blocks in pairs: the 32 bytes of blocks 2p, 2p+1 hold
 *                           byte j = q_2p[j] | q_2p+1[j] << 4 (one 32-byte load, one mask, one
 *                           shift give both blocks' codes); an odd last block is 16 bytes,
 *                           byte j = q[j] | q[j+16] << 4. q in 0..15
 *       d  fp16  [N][K/32]  block scale;  m fp16 [N][K/32] block minimum:  w = q * d + m
 *   q8: w  int8  [N][K]     symmetric, -127..127
 *       d  fp16  [N][K/32]  block scale:  w = q * d
 *   bf16: w uint16 [N][K]   bfloat16 bits (the weight's upper 16 float bits); activations stay
 *                           fp32 (no activation rounding: exact products of the stored weights)
 * Activations are quantized per block of 32 to int8 (symmetric, scale = max|x| / 127), the
 * products summed exactly in integers (AVX2 vpmaddubsw / vpmaddwd), the block sums scaled in
 * fp32. For q4, sum_i (q_i d + m) xq_i dx = d dx sum_i q_i xq_i + m dx sum_i xq_i.
 *
 * y [M][N] = x [M][K] @ W^T, all fp32, rows of x independent (M > 1: prefill). The loop runs
 * over output rows outside and activation rows inside, so a weight row is read from memory
 * once per call whatever M is.
 */
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

int pe_abi_version(void) { return 4; }
int pe_simd(void) { return PE_AVX2; }

static float half_to_float(uint16_t h) {
#if PE_AVX2
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000 | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

/* Per block of 32: xq = round(x / dx) with dx = max|x| / 127; sx = dx * sum of xq (the block sum
 * of the quantized activations, so that q4's minimum term sees the same activations as its
 * scale term: the product is then exactly dequantized weight . dequantized activation). */
static void quant_act(const float *x, int K, int8_t *xq, float *dx, float *sx) {
    for (int b = 0; b < K / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0.0f;
        for (int i = 0; i < QK; i++) {
            float a = fabsf(xb[i]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < QK; i++) {
            int8_t q = (int8_t)lrintf(xb[i] * inv);
            xq[b * QK + i] = q;
            sum += q;
        }
        dx[b] = d;
        sx[b] = d * (float)sum;
    }
}

#if PE_AVX2
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* Code j (0..31) of block b in a q4 row of nb blocks (the pair layout above). */
static inline int q4_code(const uint8_t *w, int b, int j, int nb) {
    if (b < (nb & ~1)) return (w[(size_t)(b & ~1) * 16 + j] >> ((b & 1) * 4)) & 0x0f;
    const uint8_t *odd = w + (size_t)b * 16;
    return j < 16 ? odd[j] & 0x0f : odd[j - 16] >> 4;
}

/* One output: row of q4 weights . one quantized activation row. `nb` counts from block b0 = 0
 * of this pointer, which must be the start of a pair (callers pass even offsets). */
static float dot_q4(const uint8_t *w, const uint16_t *d, const uint16_t *m, const int8_t *xq, const float *dx,
                    const float *sx, int nb) {
    int b = 0;
    float tail = 0.0f;
#if PE_AVX2
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), macc = _mm256_setzero_ps();
    float scale[8];
    for (; b + 8 <= nb; b += 8) {
        __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b)));
        __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(m + b)));
        _mm256_storeu_ps(scale, _mm256_mul_ps(dv, _mm256_loadu_ps(dx + b)));
        macc = _mm256_fmadd_ps(mv, _mm256_loadu_ps(sx + b), macc);
        for (int j = 0; j < 8; j += 2) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w + (size_t)(b + j) * 16));
            __m256i q0 = _mm256_and_si256(raw, low4);
            __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + (size_t)(b + j) * QK));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + (size_t)(b + j + 1) * QK));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, x0), ones);
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, x1), ones);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(scale[j]), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(scale[j + 1]), acc1);
        }
    }
    tail = hsum(_mm256_add_ps(acc0, acc1)) + hsum(macc);
#endif
    for (; b < nb; b++) {
        const int8_t *xb = xq + (size_t)b * QK;
        int32_t s = 0;
        for (int j = 0; j < QK; j++) s += q4_code(w, b, j, nb) * xb[j];
        tail += (float)s * half_to_float(d[b]) * dx[b] + half_to_float(m[b]) * sx[b];
    }
    return tail;
}

/* One output: row of q8 weights . one quantized activation row. */
static float dot_q8(const int8_t *w, const uint16_t *d, const int8_t *xq, const float *dx, int nb) {
    int b = 0;
    float tail = 0.0f;
#if PE_AVX2
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float scale[8];
    for (; b + 8 <= nb; b += 8) {
        __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b)));
        _mm256_storeu_ps(scale, _mm256_mul_ps(dv, _mm256_loadu_ps(dx + b)));
        for (int j = 0; j < 8; j += 2) {
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + (size_t)(b + j) * QK));
            __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + (size_t)(b + j + 1) * QK));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + (size_t)(b + j) * QK));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + (size_t)(b + j + 1) * QK));
            /* |w| (unsigned) times x carrying w's sign: vpmaddubsw needs one unsigned operand. */
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones);
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1)), ones);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(scale[j]), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(scale[j + 1]), acc1);
        }
    }
    tail = hsum(_mm256_add_ps(acc0, acc1));
#endif
    for (; b < nb; b++) {
        const int8_t *wb = w + (size_t)b * QK;
        const int8_t *xb = xq + (size_t)b * QK;
        int32_t s = 0;
        for (int j = 0; j < QK; j++) s += wb[j] * xb[j];
        tail += (float)s * half_to_float(d[b]) * dx[b];
    }
    return tail;
}

/* One output: row of bf16 weights . one fp32 activation row. */
static float dot_bf16(const uint16_t *w, const float *x, int k) {
    int i = 0;
    float tail = 0.0f;
#if PE_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= k; i += 16) {
        __m256i w0 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i))), 16);
        __m256i w1 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + i + 8))), 16);
        acc0 = _mm256_fmadd_ps(_mm256_castsi256_ps(w0), _mm256_loadu_ps(x + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_castsi256_ps(w1), _mm256_loadu_ps(x + i + 8), acc1);
    }
    tail = hsum(_mm256_add_ps(acc0, acc1));
#endif
    for (; i < k; i++) {
        uint32_t bits = (uint32_t)w[i] << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        tail += f * x[i];
    }
    return tail;
}

/* Four activation rows at once against one weight row (prefill): each weight block is unpacked
 * once for the four rows. out[r] = row r's dot product; xq/dx/sx point at row 0, rows `stride`
 * int8 values (and stride / 32 scales) apart. Same per-row arithmetic as dot_q4 / dot_q8. */
static void dot_q4_x4(const uint8_t *w, const uint16_t *d, const uint16_t *m, const int8_t *xq, const float *dx,
                      const float *sx, int nb, size_t stride, float *out) {
    int b = 0;
    float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    size_t sb = stride / QK;
#if PE_AVX2
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 macc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float scale[4][8];
    for (; b + 8 <= nb; b += 8) {
        __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b)));
        __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(m + b)));
        for (int r = 0; r < 4; r++) {
            _mm256_storeu_ps(scale[r], _mm256_mul_ps(dv, _mm256_loadu_ps(dx + r * sb + b)));
            macc[r] = _mm256_fmadd_ps(mv, _mm256_loadu_ps(sx + r * sb + b), macc[r]);
        }
        for (int j = 0; j < 8; j += 2) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w + (size_t)(b + j) * 16));
            __m256i q0 = _mm256_and_si256(raw, low4), q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
            for (int r = 0; r < 4; r++) {
                const int8_t *xr = xq + r * stride + (size_t)(b + j) * QK;
                __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, _mm256_loadu_si256((const __m256i *)xr)), ones);
                __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)(xr + QK))), ones);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(scale[r][j]), acc[r]);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(scale[r][j + 1]), acc[r]);
            }
        }
    }
    for (int r = 0; r < 4; r++) tail[r] = hsum(acc[r]) + hsum(macc[r]);
#endif
    for (int r = 0; r < 4; r++) out[r] = tail[r];
    if (b < nb)
        for (int r = 0; r < 4; r++)
            out[r] += dot_q4(w + (size_t)b * 16, d + b, m + b, xq + r * stride + (size_t)b * QK, dx + r * sb + b,
                             sx + r * sb + b, nb - b);
}

static void dot_q8_x4(const int8_t *w, const uint16_t *d, const int8_t *xq, const float *dx, int nb, size_t stride,
                      float *out) {
    int b = 0;
    float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    size_t sb = stride / QK;
#if PE_AVX2
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float scale[4][8];
    for (; b + 8 <= nb; b += 8) {
        __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b)));
        for (int r = 0; r < 4; r++) _mm256_storeu_ps(scale[r], _mm256_mul_ps(dv, _mm256_loadu_ps(dx + r * sb + b)));
        for (int j = 0; j < 8; j++) {
            __m256i wv = _mm256_loadu_si256((const __m256i *)(w + (size_t)(b + j) * QK));
            __m256i aw = _mm256_sign_epi8(wv, wv);
            for (int r = 0; r < 4; r++) {
                __m256i x = _mm256_loadu_si256((const __m256i *)(xq + r * stride + (size_t)(b + j) * QK));
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, wv)), ones);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scale[r][j]), acc[r]);
            }
        }
    }
    for (int r = 0; r < 4; r++) tail[r] = hsum(acc[r]);
#endif
    for (int r = 0; r < 4; r++) out[r] = tail[r];
    if (b < nb)
        for (int r = 0; r < 4; r++)
            out[r] += dot_q8(w + (size_t)b * QK, d + b, xq + r * stride + (size_t)b * QK, dx + r * sb + b, nb - b);
}

/* Quantize the M activation rows into one scratch allocation; 0 on success, -1 out of memory. */
static int quant_rows(const float *x, int M, int K, int8_t **xq, float **dx, float **sx) {
    int nb = K / QK;
    *xq = (int8_t *)malloc((size_t)M * K + 64);
    *dx = (float *)malloc(sizeof(float) * (size_t)M * nb);
    *sx = (float *)malloc(sizeof(float) * (size_t)M * nb);
    if (!*xq || !*dx || !*sx) {
        free(*xq); free(*dx); free(*sx);
        return -1;
    }
    for (int r = 0; r < M; r++) quant_act(x + (size_t)r * K, K, *xq + (size_t)r * K, *dx + (size_t)r * nb, *sx + (size_t)r * nb);
    return 0;
}

/* y[M][N] = x[M][K] @ W^T for output rows [n0, n1); returns 0, or -1 (bad shape / no memory). */
int pe_gemm_q4(const uint8_t *w, const uint16_t *d, const uint16_t *m, const float *x, float *y, int M, int N,
               int K, int n0, int n1) {
    if (K % QK || M < 1 || n0 < 0 || n1 > N || n0 > n1) return -1;
    int nb = K / QK;
    int8_t *xq; float *dx, *sx;
    if (quant_rows(x, M, K, &xq, &dx, &sx)) return -1;
    for (int n = n0; n < n1; n++) {
        const uint8_t *wr = w + (size_t)n * (K / 2);
        const uint16_t *dr = d + (size_t)n * nb, *mr = m + (size_t)n * nb;
        int r = 0;
        for (float o4[4]; r + 4 <= M; r += 4) {
            dot_q4_x4(wr, dr, mr, xq + (size_t)r * K, dx + (size_t)r * nb, sx + (size_t)r * nb, nb, (size_t)K, o4);
            for (int i = 0; i < 4; i++) y[(size_t)(r + i) * N + n] = o4[i];
        }
        for (; r < M; r++)
            y[(size_t)r * N + n] = dot_q4(wr, dr, mr, xq + (size_t)r * K, dx + (size_t)r * nb, sx + (size_t)r * nb, nb);
    }
    free(xq); free(dx); free(sx);
    return 0;
}

int pe_gemm_q8(const int8_t *w, const uint16_t *d, const float *x, float *y, int M, int N, int K, int n0, int n1) {
    if (K % QK || M < 1 || n0 < 0 || n1 > N || n0 > n1) return -1;
    int nb = K / QK;
    int8_t *xq; float *dx, *sx;
    if (quant_rows(x, M, K, &xq, &dx, &sx)) return -1;
    for (int n = n0; n < n1; n++) {
        const int8_t *wr = w + (size_t)n * K;
        const uint16_t *dr = d + (size_t)n * nb;
        int r = 0;
        for (float o4[4]; r + 4 <= M; r += 4) {
            dot_q8_x4(wr, dr, xq + (size_t)r * K, dx + (size_t)r * nb, nb, (size_t)K, o4);
            for (int i = 0; i < 4; i++) y[(size_t)(r + i) * N + n] = o4[i];
        }
        for (; r < M; r++) y[(size_t)r * N + n] = dot_q8(wr, dr, xq + (size_t)r * K, dx + (size_t)r * nb, nb);
    }
    free(xq); free(dx); free(sx);
    return 0;
}

int pe_gemm_bf16(const uint16_t *w, const float *x, float *y, int M, int N, int K, int n0, int n1) {
    if (M < 1 || n0 < 0 || n1 > N || n0 > n1) return -1;
    for (int n = n0; n < n1; n++)
        for (int r = 0; r < M; r++) y[(size_t)r * N + n] = dot_bf16(w + (size_t)n * K, x + (size_t)r * K, K);
    return 0;
}

/* ---- One decode step of a whole decoder stack (batch 1, one token) -----------------------------
 *
 * The arithmetic of personalization_engine/tts/layers.py:forward for one token at position
 * `pos`, every linear layer packed: RMSNorm -> fused q|k|v -> per-head q/k RMSNorm -> rotary
 * embedding -> key/value written to the cache at pos -> attention over cache slots 0..pos
 * (grouped-query: head h reads kv head h / (heads / kv_heads)) -> o -> residual -> RMSNorm ->
 * fused gate|up -> SiLU(gate) * up -> down -> residual; the final RMSNorm last. All activations
 * fp32; ~10 calls' worth of PyTorch dispatch per layer (~100 small ops) become one call per step.
 */
typedef struct {
    int bits;               /* 4, 8 or 16 (bf16) */
    int n, k;               /* outputs, inputs */
    const void *w;
    const uint16_t *d, *m;  /* m: q4 only */
} pe_lin;

typedef struct {
    const float *in_norm, *post_norm, *q_norm, *k_norm;
    pe_lin qkv, o, gate_up, down;
} pe_layer;

typedef struct {
    int layers, hidden, heads, kv_heads, head_dim, inter, rope_len;
    float eps, scaling;
    const float *cos, *sin;  /* [rope_len][head_dim], sin's first half negated */
    const float *final_norm;
    const pe_layer *layer;
} pe_stack;

static float dotf(const float *a, const float *b, int n) {
    int i = 0;
    float tail = 0.0f;
#if PE_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    tail = hsum(_mm256_add_ps(acc0, acc1));
#endif
    for (; i < n; i++) tail += a[i] * b[i];
    return tail;
}

/* y += a * x */
static void axpyf(float a, const float *x, float *y, int n) {
    int i = 0;
#if PE_AVX2
    __m256 av = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

static void rms_norm(const float *x, const float *w, float *out, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

static void gemv(const pe_lin *l, const float *x, float *y, int8_t *xq, float *dx, float *sx) {
    int nb = l->k / QK;
    if (l->bits == 16) {
        for (int n = 0; n < l->n; n++) y[n] = dot_bf16((const uint16_t *)l->w + (size_t)n * l->k, x, l->k);
        return;
    }
    quant_act(x, l->k, xq, dx, sx);
    if (l->bits == 4) {
        for (int n = 0; n < l->n; n++)
            y[n] = dot_q4((const uint8_t *)l->w + (size_t)n * (l->k / 2), l->d + (size_t)n * nb, l->m + (size_t)n * nb,
                          xq, dx, sx, nb);
    } else {
        for (int n = 0; n < l->n; n++)
            y[n] = dot_q8((const int8_t *)l->w + (size_t)n * l->k, l->d + (size_t)n * nb, xq, dx, nb);
    }
}

static void head_norm_rope(float *v, const float *w, const float *cs, const float *sn, int dim, float eps,
                           float *tmp) {
    rms_norm(v, w, tmp, dim, eps);
    int half = dim / 2;
    for (int i = 0; i < dim; i++) v[i] = tmp[i] * cs[i] + tmp[(i + half) % dim] * sn[i];
}

/* x: [hidden] in/out. keys/values: per layer [kv_heads][cap][head_dim]. Returns 0 or -1. */
int pe_stack_step(const pe_stack *s, float *x, int pos, float *const *keys, float *const *values, int cap) {
    if (pos < 0 || pos >= cap || pos >= s->rope_len) return -1;
    int H = s->hidden, D = s->head_dim, qd = s->heads * D, kvd = s->kv_heads * D, group = s->heads / s->kv_heads;
    int kmax = H > qd ? H : qd;
    if (s->inter > kmax) kmax = s->inter;
    size_t floats = (size_t)H + (qd + 2 * kvd) + qd + (size_t)cap + 2 * (size_t)s->inter + D + kmax / QK * 2 + H;
    float *buf = (float *)malloc(sizeof(float) * floats);
    int8_t *xq = (int8_t *)malloc((size_t)kmax + 64);
    if (!buf || !xq) { free(buf); free(xq); return -1; }
    float *h = buf, *qkv = h + H, *att = qkv + qd + 2 * kvd, *sc = att + qd, *gu = sc + cap, *tmp = gu + 2 * s->inter;
    float *dx = tmp + D, *sx = dx + kmax / QK, *o = sx + kmax / QK;
    const float *cs = s->cos + (size_t)pos * D, *sn = s->sin + (size_t)pos * D;
    for (int li = 0; li < s->layers; li++) {
        const pe_layer *L = &s->layer[li];
        rms_norm(x, L->in_norm, h, H, s->eps);
        gemv(&L->qkv, h, qkv, xq, dx, sx);
        float *q = qkv, *k = qkv + qd, *v = qkv + qd + kvd;
        for (int hh = 0; hh < s->heads; hh++) head_norm_rope(q + hh * D, L->q_norm, cs, sn, D, s->eps, tmp);
        for (int g = 0; g < s->kv_heads; g++) {
            head_norm_rope(k + g * D, L->k_norm, cs, sn, D, s->eps, tmp);
            memcpy(keys[li] + ((size_t)g * cap + pos) * D, k + g * D, sizeof(float) * D);
            memcpy(values[li] + ((size_t)g * cap + pos) * D, v + g * D, sizeof(float) * D);
        }
        for (int hh = 0; hh < s->heads; hh++) {
            const float *qh = q + hh * D;
            const float *kc = keys[li] + (size_t)(hh / group) * cap * D, *vc = values[li] + (size_t)(hh / group) * cap * D;
            float mx = -INFINITY;
            for (int t = 0; t <= pos; t++) {
                sc[t] = dotf(qh, kc + (size_t)t * D, D) * s->scaling;
                mx = sc[t] > mx ? sc[t] : mx;
            }
            float sum = 0.0f;
            for (int t = 0; t <= pos; t++) { sc[t] = expf(sc[t] - mx); sum += sc[t]; }
            float *ah = att + hh * D;
            for (int i = 0; i < D; i++) ah[i] = 0.0f;
            for (int t = 0; t <= pos; t++) axpyf(sc[t] / sum, vc + (size_t)t * D, ah, D);
        }
        gemv(&L->o, att, o, xq, dx, sx);
        for (int i = 0; i < H; i++) x[i] += o[i];
        rms_norm(x, L->post_norm, h, H, s->eps);
        gemv(&L->gate_up, h, gu, xq, dx, sx);
        for (int i = 0; i < s->inter; i++) { float g = gu[i]; gu[i] = g / (1.0f + expf(-g)) * gu[s->inter + i]; }
        gemv(&L->down, gu, o, xq, dx, sx);
        for (int i = 0; i < H; i++) x[i] += o[i];
    }
    rms_norm(x, s->final_norm, h, H, s->eps);
    memcpy(x, h, sizeof(float) * H);
    free(buf); free(xq);
    return 0;
}
