#include "_gemv.h"

/* ---- One decode step of a whole decoder stack (batch 1, one token or a few) ---------------------
 *
 * The arithmetic of personalization_engine/tts/layers.py:forward for one token at position
 * `pos`, every linear layer packed: RMSNorm -> fused q|k|v -> per-head q/k RMSNorm -> rotary
 * embedding -> key/value written to the cache at pos -> attention over cache slots 0..pos
 * (grouped-query: head h reads kv head h / (heads / kv_heads)) -> o -> residual -> RMSNorm ->
 * fused gate|up -> SiLU(gate) * up -> down -> residual; the final RMSNorm last. All activations
 * fp32; ~10 calls' worth of PyTorch dispatch per layer (~100 small ops) become one call per step.
 * pe_stack_rows also runs m > 1 tokens at consecutive positions (the code predictor's two-token
 * start of each frame): every product reads its weight row once for all m activation rows, and
 * token r attends to the cache up to its own position, as the causal prefill does.
 */
typedef struct {
    int bits;               /* 4, 8 or 16 (bf16) */
    int n, k;               /* outputs, inputs */
    const void *w;
    const uint16_t *d;
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

/* One product's inputs: the layer (by value) and `m` activation rows (fp32 for bf16, else
 * quantized), row r at x + r * k, xq + r * k, dx + r * k / 32, sx + r * k / 32. */
typedef struct {
    pe_lin l;
    int m;
    const float *x;
    const int8_t *xq;
    const float *dx, *sx;
} rows_ctx;

/* out[0 .. v1-v0) = products v0 .. v1-1, product v = weight row v / m . activation row v % m
 * (with m = 1: output row v; with m > 1 the m products of a weight row are neighbours, so the
 * row is read from memory once for all m activation rows). */
static void lin_rows(const void *p, int v0, int v1, float *out) {
    const rows_ctx *c = (const rows_ctx *)p;
    const pe_lin *l = &c->l;
    int nb = l->k / QK;
    for (int v = v0; v < v1; v++) {
        int n = v / c->m, r = v % c->m;
        if (l->bits == 16)
            out[v - v0] = dot_bf16((const uint16_t *)l->w + (size_t)n * l->k, c->x + (size_t)r * l->k, l->k);
        else if (l->bits == 4)
            out[v - v0] = dot_q4((const uint8_t *)l->w + (size_t)n * (l->k / 2), l->d + (size_t)n * nb,
                                 c->xq + (size_t)r * l->k, c->dx + (size_t)r * nb, c->sx + (size_t)r * nb, nb);
        else
            out[v - v0] = dot_q8((const int8_t *)l->w + (size_t)n * l->k, l->d + (size_t)n * nb,
                                 c->xq + (size_t)r * l->k, c->dx + (size_t)r * nb, nb);
    }
}

/* y[r][:] = l . x[r][:] for the m rows of x (row stride l->k), y's rows l->n apart; `inter`: m * l->n
 * floats of scratch when m > 1 (the products come out interleaved). With `pooled`, the
 * activations go to the pool's scratch and the products are shared with the helper thread. */
static void gemv(const pe_lin *l, int m, const float *x, float *y, int8_t *xq, float *dx, float *sx, float *inter,
                 int pooled) {
    int nb = l->k / QK;
    size_t kq = ((size_t)m * l->k + 63) / 64 * 64;
    unsigned char *s = pooled ? (unsigned char *)pe_pool_scratch(kq + 2 * sizeof(float) * (size_t)m * nb
                                                                  + 4 * (size_t)m * l->k)
                              : NULL;
    if (s) {
        xq = (int8_t *)s;
        dx = (float *)(s + kq);
        sx = dx + (size_t)m * nb;
    }
    rows_ctx c = {*l, m, x, xq, dx, sx};
    if (l->bits == 16) {
        if (s) {
            memcpy(s, x, sizeof(float) * (size_t)m * l->k);
            c.x = (const float *)s;
        }
    } else {
        for (int r = 0; r < m; r++)
            quant_act(x + (size_t)r * l->k, l->k, xq + (size_t)r * l->k, dx + (size_t)r * nb, sx + (size_t)r * nb);
    }
    float *out = m == 1 ? y : inter;
    if (s)
        pe_pool_rows(lin_rows, &c, sizeof c, m * l->n, out);
    else
        lin_rows(&c, 0, m * l->n, out);
    if (m > 1)
        for (int n = 0; n < l->n; n++)
            for (int r = 0; r < m; r++) y[(size_t)r * l->n + n] = inter[(size_t)n * m + r];
}

static void head_norm_rope(float *v, const float *w, const float *cs, const float *sn, int dim, float eps,
                           float *tmp) {
    rms_norm(v, w, tmp, dim, eps);
    int half = dim / 2;
    for (int i = 0; i < dim; i++) v[i] = tmp[i] * cs[i] + tmp[(i + half) % dim] * sn[i];
}

/* x: [m][hidden] in/out, the tokens at positions pos .. pos + m - 1 (each attends to the cache up
 * to itself, as a causal prefill does). keys/values: per layer [kv_heads][cap][head_dim].
 * Returns 0 or -1. */
int pe_stack_rows(const pe_stack *s, float *x, int pos, int m, float *const *keys, float *const *values, int cap) {
    if (m < 1 || pos < 0 || pos + m > cap || pos + m > s->rope_len) return -1;
    int H = s->hidden, D = s->head_dim, qd = s->heads * D, kvd = s->kv_heads * D, group = s->heads / s->kv_heads;
    int W = qd + 2 * kvd;
    int kmax = H > qd ? H : qd;
    if (s->inter > kmax) kmax = s->inter;
    int widest = W > 2 * s->inter ? W : 2 * s->inter;
    if (H > widest) widest = H;
    size_t rowf = (size_t)H + W + qd + 2 * (size_t)s->inter + H;  /* h, qkv, att, gu, o per row */
    size_t floats = (size_t)m * rowf + (size_t)cap + D + (size_t)m * (kmax / QK) * 2 + (m > 1 ? (size_t)m * widest : 0);
    float *buf = (float *)malloc(sizeof(float) * floats);
    int8_t *xq = (int8_t *)malloc((size_t)m * kmax + 64);
    if (!buf || !xq) { free(buf); free(xq); return -1; }
    float *h = buf, *qkv = h + (size_t)m * H, *att = qkv + (size_t)m * W, *gu = att + (size_t)m * qd;
    float *o = gu + (size_t)m * 2 * s->inter, *sc = o + (size_t)m * H, *tmp = sc + cap, *dx = tmp + D;
    float *sx = dx + (size_t)m * (kmax / QK), *inter = sx + (size_t)m * (kmax / QK);
    int pooled = pe_pool_begin();
    for (int li = 0; li < s->layers; li++) {
        const pe_layer *L = &s->layer[li];
        for (int r = 0; r < m; r++) rms_norm(x + (size_t)r * H, L->in_norm, h + (size_t)r * H, H, s->eps);
        gemv(&L->qkv, m, h, qkv, xq, dx, sx, inter, pooled);
        for (int r = 0; r < m; r++) {
            int p = pos + r;
            const float *cs = s->cos + (size_t)p * D, *sn = s->sin + (size_t)p * D;
            float *q = qkv + (size_t)r * W, *k = q + qd, *v = q + qd + kvd;
            for (int hh = 0; hh < s->heads; hh++) head_norm_rope(q + hh * D, L->q_norm, cs, sn, D, s->eps, tmp);
            for (int g = 0; g < s->kv_heads; g++) {
                head_norm_rope(k + g * D, L->k_norm, cs, sn, D, s->eps, tmp);
                memcpy(keys[li] + ((size_t)g * cap + p) * D, k + g * D, sizeof(float) * D);
                memcpy(values[li] + ((size_t)g * cap + p) * D, v + g * D, sizeof(float) * D);
            }
        }
        for (int r = 0; r < m; r++) {
            int p = pos + r;
            for (int hh = 0; hh < s->heads; hh++) {
                const float *qh = qkv + (size_t)r * W + hh * D;
                const float *kc = keys[li] + (size_t)(hh / group) * cap * D, *vc = values[li] + (size_t)(hh / group) * cap * D;
                float mx = -INFINITY;
                for (int t = 0; t <= p; t++) {
                    sc[t] = dotf(qh, kc + (size_t)t * D, D) * s->scaling;
                    mx = sc[t] > mx ? sc[t] : mx;
                }
                float sum = 0.0f;
                for (int t = 0; t <= p; t++) { sc[t] = expf(sc[t] - mx); sum += sc[t]; }
                float *ah = att + (size_t)r * qd + hh * D;
                for (int i = 0; i < D; i++) ah[i] = 0.0f;
                for (int t = 0; t <= p; t++) axpyf(sc[t] / sum, vc + (size_t)t * D, ah, D);
            }
        }
        gemv(&L->o, m, att, o, xq, dx, sx, inter, pooled);
        for (size_t i = 0; i < (size_t)m * H; i++) x[i] += o[i];
        for (int r = 0; r < m; r++) rms_norm(x + (size_t)r * H, L->post_norm, h + (size_t)r * H, H, s->eps);
        gemv(&L->gate_up, m, h, gu, xq, dx, sx, inter, pooled);
        for (int r = 0; r < m; r++) {
            float *g = gu + (size_t)r * 2 * s->inter;
            for (int i = 0; i < s->inter; i++) { float a = g[i]; g[i] = a / (1.0f + expf(-a)) * g[s->inter + i]; }
        }
        /* down reads each row's first `inter` values: gather them to rows `inter` apart */
        if (m > 1)
            for (int r = 1; r < m; r++) memmove(gu + (size_t)r * s->inter, gu + (size_t)r * 2 * s->inter, sizeof(float) * s->inter);
        gemv(&L->down, m, gu, o, xq, dx, sx, inter, pooled);
        for (size_t i = 0; i < (size_t)m * H; i++) x[i] += o[i];
    }
    for (int r = 0; r < m; r++) {
        rms_norm(x + (size_t)r * H, s->final_norm, h, H, s->eps);
        memcpy(x + (size_t)r * H, h, sizeof(float) * H);
    }
    if (pooled) pe_pool_end();
    free(buf); free(xq);
    return 0;
}

/* y[n] = W . x for one activation row (a head after a decode step), its output rows shared with
 * the pool's helper like the step's own products. bits: 4, 8 or 16 (d: NULL). Returns 0, or -1
 * (bad shape or out of memory). */
int pe_gemv_one(int bits, const void *w, const uint16_t *d, int n, int k, const float *x, float *y) {
    if ((bits != 16 && k % QK) || n < 1 || k < 1 || (bits != 4 && bits != 8 && bits != 16)) return -1;
    pe_lin l = {bits, n, k, w, d};
    int8_t *xq = (int8_t *)malloc((size_t)k + 64);
    float *dx = (float *)malloc(sizeof(float) * 2 * (size_t)(k / QK));
    if (!xq || !dx) { free(xq); free(dx); return -1; }
    int pooled = pe_pool_begin();
    gemv(&l, 1, x, y, xq, dx, dx + k / QK, NULL, pooled);
    if (pooled) pe_pool_end();
    free(xq); free(dx);
    return 0;
}
