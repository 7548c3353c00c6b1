#include "_gemv.h"

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

/* One product's inputs: the layer (by value) and its activations (fp32 for bf16, else quantized). */
typedef struct {
    pe_lin l;
    const float *x;
    const int8_t *xq;
    const float *dx, *sx;
} rows_ctx;

/* out[0 .. n1-n0) = rows n0 .. n1-1 of l . x */
static void lin_rows(const void *p, int n0, int n1, float *out) {
    const rows_ctx *c = (const rows_ctx *)p;
    const pe_lin *l = &c->l;
    int nb = l->k / QK;
    for (int n = n0; n < n1; n++) {
        if (l->bits == 16)
            out[n - n0] = dot_bf16((const uint16_t *)l->w + (size_t)n * l->k, c->x, l->k);
        else if (l->bits == 4)
            out[n - n0] = dot_q4((const uint8_t *)l->w + (size_t)n * (l->k / 2), l->d + (size_t)n * nb,
                                 l->m + (size_t)n * nb, c->xq, c->dx, c->sx, nb);
        else
            out[n - n0] = dot_q8((const int8_t *)l->w + (size_t)n * l->k, l->d + (size_t)n * nb, c->xq, c->dx, nb);
    }
}

/* y = l . x; with `pooled`, the activations go to the pool's scratch and the rows are shared. */
static void gemv(const pe_lin *l, const float *x, float *y, int8_t *xq, float *dx, float *sx, int pooled) {
    int nb = l->k / QK;
    size_t kq = ((size_t)l->k + 63) / 64 * 64;
    unsigned char *s = pooled ? (unsigned char *)pe_pool_scratch(kq + 2 * sizeof(float) * (size_t)nb + 4 * (size_t)l->k)
                              : NULL;
    if (s) {
        xq = (int8_t *)s;
        dx = (float *)(s + kq);
        sx = dx + nb;
    }
    rows_ctx c = {*l, x, xq, dx, sx};
    if (l->bits == 16) {
        if (s) {
            memcpy(s, x, sizeof(float) * (size_t)l->k);
            c.x = (const float *)s;
        }
    } else {
        quant_act(x, l->k, xq, dx, sx);
    }
    if (s)
        pe_pool_rows(lin_rows, &c, sizeof c, l->n, y);
    else
        lin_rows(&c, 0, l->n, y);
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
    int pooled = pe_pool_begin();
    for (int li = 0; li < s->layers; li++) {
        const pe_layer *L = &s->layer[li];
        rms_norm(x, L->in_norm, h, H, s->eps);
        gemv(&L->qkv, h, qkv, xq, dx, sx, pooled);
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
        gemv(&L->o, att, o, xq, dx, sx, pooled);
        for (int i = 0; i < H; i++) x[i] += o[i];
        rms_norm(x, L->post_norm, h, H, s->eps);
        gemv(&L->gate_up, h, gu, xq, dx, sx, pooled);
        for (int i = 0; i < s->inter; i++) { float g = gu[i]; gu[i] = g / (1.0f + expf(-g)) * gu[s->inter + i]; }
        gemv(&L->down, gu, o, xq, dx, sx, pooled);
        for (int i = 0; i < H; i++) x[i] += o[i];
    }
    rms_norm(x, s->final_norm, h, H, s->eps);
    memcpy(x, h, sizeof(float) * H);
    if (pooled) pe_pool_end();
    free(buf); free(xq);
    return 0;
}
