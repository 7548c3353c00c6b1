/* SnakeBeta of the 12 Hz codec decoder in one pass: y = x + inv_beta[c] * sin(alpha[c] * x)^2.
 *
 * PyTorch runs it as four passes over the activations (mul, sin, square, addcmul), about 10 % of
 * the streamed codec's time on this AVX2 CPU (the 96-channel stage alone is 1.5 M elements a
 * frame). Here it is one pass with a vectorised sine: Cody-Waite reduction by pi/4 in three
 * parts, then the minimax polynomials of Cephes' sinf / cosf on [-pi/4, pi/4] (about 1 ulp for
 * |x| up to 8192; larger arguments, rare, go through libm's sinf). alpha and inv_beta are
 * exp(alpha), 1 / (exp(beta) + eps), computed once at load (tts/codec.py FusedSnake).
 *
 * Layout: fp32 time-major rows of C channels (the rewritten decoder's channels-last (B, C, 1, T)
 * tensors), alpha and inv_beta indexed by the column.
 */
#include "_gemv.h"

#define SIN_MAX_ARG 8192.0f

static inline float snake1(float x, float a, float ib) {
    float s = sinf(a * x);
    return x + ib * (s * s);
}

#if PE_AVX2
/* sin(x) for |x| <= SIN_MAX_ARG: j = nearest even multiple of pi/4 below |x| * 4/pi, the
 * sine or the cosine polynomial by j's bit 1, the sign flipped by j's bit 2 and x's sign. */
static inline __m256 sin8(__m256 x) {
    const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000));
    __m256 sign = _mm256_and_ps(x, sign_mask);
    x = _mm256_andnot_ps(sign_mask, x);
    __m256i j = _mm256_cvttps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(1.27323954473516f)));
    j = _mm256_and_si256(_mm256_add_epi32(j, _mm256_set1_epi32(1)), _mm256_set1_epi32(~1));
    __m256 y = _mm256_cvtepi32_ps(j);
    sign = _mm256_xor_ps(sign, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(j, _mm256_set1_epi32(4)), 29)));
    __m256 use_sin = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(j, _mm256_set1_epi32(2)),
                                                            _mm256_setzero_si256()));
    x = _mm256_fnmadd_ps(y, _mm256_set1_ps(0.78515625f), x);
    x = _mm256_fnmadd_ps(y, _mm256_set1_ps(2.4187564849853515625e-4f), x);
    x = _mm256_fnmadd_ps(y, _mm256_set1_ps(3.77489497744594108e-8f), x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 c = _mm256_fmadd_ps(_mm256_set1_ps(2.443315711809948e-5f), z, _mm256_set1_ps(-1.388731625493765e-3f));
    c = _mm256_fmadd_ps(c, z, _mm256_set1_ps(4.166664568298827e-2f));
    c = _mm256_mul_ps(_mm256_mul_ps(c, z), z);
    c = _mm256_add_ps(_mm256_fnmadd_ps(_mm256_set1_ps(0.5f), z, c), _mm256_set1_ps(1.0f));
    __m256 s = _mm256_fmadd_ps(_mm256_set1_ps(-1.9515295891e-4f), z, _mm256_set1_ps(8.3321608736e-3f));
    s = _mm256_fmadd_ps(s, z, _mm256_set1_ps(-1.6666654611e-1f));
    s = _mm256_fmadd_ps(_mm256_mul_ps(s, z), x, x);
    return _mm256_xor_ps(_mm256_blendv_ps(c, s, use_sin), sign);
}

/* x + ib * sin(a * x)^2 for 8 lanes, or 0 lanes done (returns 0) when some |a * x| needs libm. */
static inline int snake8(const float *x, float *y, __m256 a, __m256 ib) {
    __m256 xv = _mm256_loadu_ps(x), ax = _mm256_mul_ps(a, xv);
    __m256 mag = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000)), ax);
    if (_mm256_movemask_ps(_mm256_cmp_ps(mag, _mm256_set1_ps(SIN_MAX_ARG), _CMP_GT_OQ))) return 0;
    __m256 s = sin8(ax);
    _mm256_storeu_ps(y, _mm256_fmadd_ps(_mm256_mul_ps(s, s), ib, xv));
    return 1;
}
#endif

/* Time-major: rows of `channels`; element c of a row uses alpha[c], inv_beta[c]. */
void pe_snake_time_major(const float *x, float *y, const float *alpha, const float *inv_beta, long rows,
                         int channels) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * channels;
        float *yr = y + r * channels;
        int c = 0;
#if PE_AVX2
        for (; c + 8 <= channels; c += 8) {
            if (!snake8(xr + c, yr + c, _mm256_loadu_ps(alpha + c), _mm256_loadu_ps(inv_beta + c)))
                for (int i = c; i < c + 8; i++) yr[i] = snake1(xr[i], alpha[i], inv_beta[i]);
        }
#endif
        for (; c < channels; c++) yr[c] = snake1(xr[c], alpha[c], inv_beta[c]);
    }
}
