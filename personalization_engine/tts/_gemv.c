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
 *       d  fp16  [N][K/32]  block scale:  w = (q - 8) * d  (symmetric; the code 8 is zero)
 *   q8: w  int8  [N][K]     symmetric, -127..127
 *       d  fp16  [N][K/32]  block scale:  w = q * d
 *   bf16: w uint16 [N][K]   bfloat16 bits (the weight's upper 16 float bits); activations stay
 *                           fp32 (no activation rounding: exact products of the stored weights)
 * Activations are quantized per block of 32 to int8 (symmetric, scale = max|x| / 127), the
 * products summed exactly in integers (AVX2 vpmaddubsw / vpmaddwd, or VNNI vpdpbusd where the
 * CPU has it: the same sums, see pe_dot4), the block sums scaled in fp32.
 * For q4, sum_i (q_i - 8) d xq_i dx = d dx sum_i q_i xq_i - 8 d dx sum_i xq_i.
 *
 * y [M][N] = x [M][K] @ W^T, all fp32, rows of x independent (M > 1: prefill). The loop runs
 * over output rows outside and activation rows inside, so a weight row is read from memory
 * once per call whatever M is.
 */
#include "_gemv.h"

int pe_abi_version(void) { return 9; }
/* 0: plain C, 1: AVX2 + FMA + F16C, 2: that and VNNI, 3: and AVX-512 for the q4 products. */
int pe_simd(void) { return PE_AVX2 + PE_VNNI + PE_AVX512; }

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
 * of the quantized activations, so that q4's offset term sees the same activations as its
 * scale term: the product is then exactly dequantized weight . dequantized activation). */
void quant_act(const float *x, int K, int8_t *xq, float *dx, float *sx) {
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


/* Code j (0..31) of block b in a q4 row of nb blocks (the pair layout above). */
static inline int q4_code(const uint8_t *w, int b, int j, int nb) {
    if (b < (nb & ~1)) return (w[(size_t)(b & ~1) * 16 + j] >> ((b & 1) * 4)) & 0x0f;
    const uint8_t *odd = w + (size_t)b * 16;
    return j < 16 ? odd[j] & 0x0f : odd[j - 16] >> 4;
}

#if PE_AVX512
/* The codes of a block pair as 64 bytes, block 2p in the low half and 2p+1 in the high half:
 * the order of the activations of the two blocks in memory. */
static inline __m512i q4_pair512(const uint8_t *pair) {
    const __m512i shift = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)pair));
    return _mm512_and_si512(_mm512_srlv_epi16(raw, shift), _mm512_set1_epi8(0x0f));
}

/* Lanes 0-7 take element k of a vector of 8 scales, lanes 8-15 element k + 1 (k = 0, 2, 4, 6). */
static inline __m512i pair_scale_index(int k) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(k)), _mm256_set1_epi32(k + 1), 1);
}
#endif

/* One output: row of q4 weights . one quantized activation row. `nb` counts from block b0 = 0
 * of this pointer, which must be the start of a pair (callers pass even offsets). */
float dot_q4(const uint8_t *w, const uint16_t *d, const int8_t *xq, const float *dx, const float *sx, int nb) {
    int b = 0;
    float tail = 0.0f;
#if PE_AVX512
    const __m512i idx[4] = {pair_scale_index(0), pair_scale_index(2), pair_scale_index(4), pair_scale_index(6)};
    __m512 acc = _mm512_setzero_ps();
    __m256 macc = _mm256_setzero_ps();
    for (; b + 8 <= nb; b += 8) {
        __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b)));
        __m512 sv = _mm512_castps256_ps512(_mm256_mul_ps(dv, _mm256_loadu_ps(dx + b)));
        macc = _mm256_fmadd_ps(dv, _mm256_loadu_ps(sx + b), macc);
        for (int j = 0; j < 8; j += 2) {
            __m512i q = q4_pair512(w + (size_t)(b + j) * 16);
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, _mm512_loadu_si512(xq + (size_t)(b + j) * QK));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(idx[j / 2], sv), acc);
        }
    }
    tail = _mm512_reduce_add_ps(acc) - 8.0f * hsum(macc);
#elif PE_AVX2
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), macc = _mm256_setzero_ps();
    float scale[8];
    for (; b + 8 <= nb; b += 8) {
        __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b)));
        _mm256_storeu_ps(scale, _mm256_mul_ps(dv, _mm256_loadu_ps(dx + b)));
        macc = _mm256_fmadd_ps(dv, _mm256_loadu_ps(sx + b), macc);
        for (int j = 0; j < 8; j += 2) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w + (size_t)(b + j) * 16));
            __m256i q0 = _mm256_and_si256(raw, low4);
            __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(xq + (size_t)(b + j) * QK));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xq + (size_t)(b + j + 1) * QK));
            __m256i p0 = pe_dot4(q0, x0);
            __m256i p1 = pe_dot4(q1, x1);
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(scale[j]), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(scale[j + 1]), acc1);
        }
    }
    tail = hsum(_mm256_add_ps(acc0, acc1)) - 8.0f * hsum(macc);
#endif
    for (; b < nb; b++) {
        const int8_t *xb = xq + (size_t)b * QK;
        int32_t s = 0;
        for (int j = 0; j < QK; j++) s += q4_code(w, b, j, nb) * xb[j];
        float db = half_to_float(d[b]);
        tail += (float)s * db * dx[b] - 8.0f * db * sx[b];
    }
    return tail;
}

/* One output: row of q8 weights . one quantized activation row. */
float dot_q8(const int8_t *w, const uint16_t *d, const int8_t *xq, const float *dx, int nb) {
    int b = 0;
    float tail = 0.0f;
#if PE_AVX2
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
            __m256i p0 = pe_dot4(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0));
            __m256i p1 = pe_dot4(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1));
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
float dot_bf16(const uint16_t *w, const float *x, int k) {
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
static void dot_q4_x4(const uint8_t *w, const uint16_t *d, const int8_t *xq, const float *dx, const float *sx,
                      int nb, size_t stride, float *out) {
    int b = 0;
    float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    size_t sb = stride / QK;
#if PE_AVX512
    const __m512i idx[4] = {pair_scale_index(0), pair_scale_index(2), pair_scale_index(4), pair_scale_index(6)};
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m256 macc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (; b + 8 <= nb; b += 8) {
        __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b)));
        __m512 sv[4];
        for (int r = 0; r < 4; r++) {
            sv[r] = _mm512_castps256_ps512(_mm256_mul_ps(dv, _mm256_loadu_ps(dx + r * sb + b)));
            macc[r] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(sx + r * sb + b), macc[r]);
        }
        for (int j = 0; j < 8; j += 2) {
            __m512i q = q4_pair512(w + (size_t)(b + j) * 16);
            for (int r = 0; r < 4; r++) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q,
                                                _mm512_loadu_si512(xq + r * stride + (size_t)(b + j) * QK));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(idx[j / 2], sv[r]), acc[r]);
            }
        }
    }
    for (int r = 0; r < 4; r++) tail[r] = _mm512_reduce_add_ps(acc[r]) - 8.0f * hsum(macc[r]);
#elif PE_AVX2
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 macc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float scale[4][8];
    for (; b + 8 <= nb; b += 8) {
        __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b)));
        for (int r = 0; r < 4; r++) {
            _mm256_storeu_ps(scale[r], _mm256_mul_ps(dv, _mm256_loadu_ps(dx + r * sb + b)));
            macc[r] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(sx + r * sb + b), macc[r]);
        }
        for (int j = 0; j < 8; j += 2) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w + (size_t)(b + j) * 16));
            __m256i q0 = _mm256_and_si256(raw, low4), q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
            for (int r = 0; r < 4; r++) {
                const int8_t *xr = xq + r * stride + (size_t)(b + j) * QK;
                __m256i p0 = pe_dot4(q0, _mm256_loadu_si256((const __m256i *)xr));
                __m256i p1 = pe_dot4(q1, _mm256_loadu_si256((const __m256i *)(xr + QK)));
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(scale[r][j]), acc[r]);
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(scale[r][j + 1]), acc[r]);
            }
        }
    }
    for (int r = 0; r < 4; r++) tail[r] = hsum(acc[r]) - 8.0f * hsum(macc[r]);
#endif
    for (int r = 0; r < 4; r++) out[r] = tail[r];
    if (b < nb)
        for (int r = 0; r < 4; r++)
            out[r] += dot_q4(w + (size_t)b * 16, d + b, xq + r * stride + (size_t)b * QK, dx + r * sb + b,
                             sx + r * sb + b, nb - b);
}

static void dot_q8_x4(const int8_t *w, const uint16_t *d, const int8_t *xq, const float *dx, int nb, size_t stride,
                      float *out) {
    int b = 0;
    float tail[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    size_t sb = stride / QK;
#if PE_AVX2
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
                __m256i p = pe_dot4(aw, _mm256_sign_epi8(x, wv));
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
int pe_gemm_q4(const uint8_t *w, const uint16_t *d, const float *x, float *y, int M, int N, int K, int n0, int n1) {
    if (K % QK || M < 1 || n0 < 0 || n1 > N || n0 > n1) return -1;
    int nb = K / QK;
    int8_t *xq; float *dx, *sx;
    if (quant_rows(x, M, K, &xq, &dx, &sx)) return -1;
    for (int n = n0; n < n1; n++) {
        const uint8_t *wr = w + (size_t)n * (K / 2);
        const uint16_t *dr = d + (size_t)n * nb;
        int r = 0;
        for (float o4[4]; r + 4 <= M; r += 4) {
            dot_q4_x4(wr, dr, xq + (size_t)r * K, dx + (size_t)r * nb, sx + (size_t)r * nb, nb, (size_t)K, o4);
            for (int i = 0; i < 4; i++) y[(size_t)(r + i) * N + n] = o4[i];
        }
        for (; r < M; r++)
            y[(size_t)r * N + n] = dot_q4(wr, dr, xq + (size_t)r * K, dx + (size_t)r * nb, sx + (size_t)r * nb, nb);
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
