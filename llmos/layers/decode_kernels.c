/* llmos CPU decode kernels, built by llmos/layers/decode_kernels.py with the system C compiler and
 * called through ctypes.
 *
 * paged_decode_attention: one query token per row against its context, read in place from the
 * paged KV cache through the row's block table (no gathered copy of the context). The cache is
 * head-major, [kv_heads, num_slots, head_dim], in float32 or bfloat16. Work items are (row, kv
 * head); the G query heads that share a KV head are computed together, so each key and value row
 * is read once per item. Within an item the keys are taken 16 at a time with an online softmax
 * (FlashAttention's running max and sum), in float32 whatever the cache's type. Items are split
 * across threads with an OpenMP loop; the library is linked against the libgomp that torch has
 * already loaded, so the loop runs on torch's own thread pool, not a second one.
 *
 * paged_store, rms_norm, rotary: the rest of a decode layer's small steps, on the calling thread.
 *
 * Written with GCC vector extensions, as wide as the ISA it is built for: 16 floats with
 * -mavx512f, 8 with -mavx2 (wider vectors than the registers spill, and ran 2x slower).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __AVX512F__
#define VL 16
#else
#define VL 8
#endif
typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
typedef uint32_t vu __attribute__((vector_size(VL * 4)));
typedef uint16_t vh __attribute__((vector_size(VL * 2)));
typedef float vf_u __attribute__((vector_size(VL * 4), aligned(4), may_alias));
typedef uint16_t vh_u __attribute__((vector_size(VL * 2), aligned(2), may_alias));
typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));

#define CHUNK 16      /* keys per online-softmax step */
#define MAX_GROUP 16  /* query heads per KV head */
#define MAX_DIM 256   /* head_dim, a multiple of 16 */
#define NV (MAX_DIM / VL)

static inline vf load_f32(const float *p) { return *(const vf_u *)p; }

static inline vf load_bf16(const uint16_t *p) {
    vu wide = __builtin_convertvector(*(const vh_u *)p, vu) << 16;
    return (vf)wide;
}

static inline void store_row(void *base, int bf16, int64_t offset, vf v) {
    if (bf16) {
        vu bits = (vu)v;
        bits += 0x7FFF + ((bits >> 16) & 1); /* round to nearest even */
        *(vh_u *)((uint16_t *)base + offset) = __builtin_convertvector(bits >> 16, vh);
    } else {
        *(vf_u *)((float *)base + offset) = v;
    }
}

static inline vf load_row(const void *base, int bf16, int64_t offset) {
    return bf16 ? load_bf16((const uint16_t *)base + offset) : load_f32((const float *)base + offset);
}

/* Lane t of the result: the sum of the lanes of v[t], for 8 vectors of 8 lanes (v8f) or 16 of 16:
 * pairs are interleaved and added level by level, VL - 1 adds in all instead of VL reductions. */
static inline v8f hsum8x8(const v8f *v) {
    v8f l1[4], l2[2];
    for (int i = 0; i < 4; i++)
        l1[i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
                __builtin_shufflevector(v[2 * i], v[2 * i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    for (int i = 0; i < 2; i++)
        l2[i] = __builtin_shufflevector(l1[2 * i], l1[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
                __builtin_shufflevector(l1[2 * i], l1[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    return __builtin_shufflevector(l2[0], l2[1], 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(l2[0], l2[1], 4, 5, 6, 7, 12, 13, 14, 15);
}

#if VL == 16
typedef float v16f __attribute__((vector_size(64)));
static inline v16f hsum16x16(const v16f *v) {
    v16f l1[8], l2[4], l3[2];
    for (int i = 0; i < 8; i++)
        l1[i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +
                __builtin_shufflevector(v[2 * i], v[2 * i + 1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    for (int i = 0; i < 4; i++)
        l2[i] = __builtin_shufflevector(l1[2 * i], l1[2 * i + 1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
                __builtin_shufflevector(l1[2 * i], l1[2 * i + 1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    for (int i = 0; i < 2; i++)
        l3[i] = __builtin_shufflevector(l2[2 * i], l2[2 * i + 1], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
                __builtin_shufflevector(l2[2 * i], l2[2 * i + 1], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    return __builtin_shufflevector(l3[0], l3[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(l3[0], l3[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
}
#endif

/* scores[t] = the lane sum of dots[t], t < CHUNK */
static inline void hsum_chunk(const vf *dots, float *scores) {
#if VL == 16
    *(v16f *)scores = hsum16x16((const v16f *)dots);
#else
    *(v8f *)scores = hsum8x8((const v8f *)dots);
    *(v8f *)(scores + 8) = hsum8x8((const v8f *)dots + 8);
#endif
}

/* exp(x) for x <= 0 (every argument here is a score minus the running max): 2^n * e^(f ln 2)
 * with n = round(x / ln 2) and a degree-6 Taylor polynomial on |f ln 2| <= ln(2) / 2 (relative
 * error ~1e-7); below -87 the result is ~1e-38, which a softmax weight may as well be. */
static inline vf vexp(vf x) {
    const vf lo = (vf){0} - 87.0f;
    vi low = x < lo;
    x = (vf)(((vi)lo & low) | ((vi)x & ~low));
    vf t = x * 1.44269504088896341f + 0.5f;
    vi n = __builtin_convertvector(t, vi); /* truncates toward zero */
    vf nf = __builtin_convertvector(n, vf);
    n += (vi)(nf > t); /* floor: minus one where truncation went up */
    nf = __builtin_convertvector(n, vf);
    vf y = (x - nf * 0.693145751953125f) - nf * 1.428606765330187e-06f;
    vf p = 1.0f + y * (1.0f + y * (0.5f + y * (1.0f / 6 + y * (1.0f / 24 + y * (1.0f / 120 + y * (1.0f / 720))))));
    vi bits = (n + 127) << 23;
    return p * (vf)bits;
}

static inline float hmax_v(vf v) {
    float m = v[0];
    for (int i = 1; i < VL; i++) m = v[i] > m ? v[i] : m;
    return m;
}

static inline float hsum_v(vf v) {
    float sum = 0.0f;
    for (int i = 0; i < VL; i++) sum += v[i];
    return sum;
}

/* One (row, kv head) item. D, G and bf16 are compile-time constants in the common cases (inlined
 * per case), so a key or value row and the G queries and accumulators stay in registers: each
 * key row is converted once and dotted with the G queries, each value row converted once and
 * added into the G accumulators. */
static inline __attribute__((always_inline)) void attend(
    const void *q, const void *k_cache, const void *v_cache, int64_t num_slots,
    const int64_t *table, int64_t context_len, int64_t row, int64_t h, int64_t H, const int64_t G,
    const int64_t D, int64_t bs, int64_t window, float scale, const int bf16, void *out) {
    const int64_t nv = D / VL;
    vf qf[MAX_GROUP][NV];
    vf acc[MAX_GROUP][NV];
    float m[MAX_GROUP], l[MAX_GROUP];
    float s[MAX_GROUP][CHUNK] __attribute__((aligned(64)));
    vf dots[MAX_GROUP][CHUNK];
    const vf zero = {0};
    for (int64_t g = 0; g < G; g++) {
        int64_t offset = (row * H + h * G + g) * D;
        for (int64_t i = 0; i < nv; i++) {
            qf[g][i] = load_row(q, bf16, offset + i * VL) * scale;
            acc[g][i] = zero;
        }
        m[g] = -INFINITY;
        l[g] = 0.0f;
    }
    int64_t first = window > 0 && context_len > window ? context_len - window : 0;
    int64_t head_base = h * num_slots;
    const int64_t elsize = bf16 ? 2 : 4;
    for (int64_t c = first; c < context_len; c += CHUNK) {
        int64_t cnt = context_len - c < CHUNK ? context_len - c : CHUNK;
        int64_t rows[CHUNK];
        /* the chunk's cache rows, and the next chunk's (one division a chunk: no idiv a token) */
        int64_t next[CHUNK];
        int64_t block = c / bs, within = c % bs;
        for (int64_t t = 0; t < 2 * CHUNK; t++) {
            int64_t slot = head_base + table[block] * bs + within;
            if (t < CHUNK) rows[t] = slot * D;
            else next[t - CHUNK] = slot * D * elsize;
            if (c + t + 1 >= context_len) break;
            if (++within == bs) {
                within = 0;
                block++;
            }
        }
        /* the next chunk's keys and values are scattered blocks the hardware cannot predict: ask
         * for them now, so they arrive while this chunk computes */
        for (int64_t t = 0; t < CHUNK && c + CHUNK + t < context_len; t++) {
            for (int64_t b = 0; b < D * elsize; b += 64) {
                __builtin_prefetch((const char *)k_cache + next[t] + b);
                __builtin_prefetch((const char *)v_cache + next[t] + b);
            }
        }
        for (int64_t t = 0; t < cnt; t++) {
            vf key[NV];
            for (int64_t i = 0; i < nv; i++) key[i] = load_row(k_cache, bf16, rows[t] + i * VL);
            for (int64_t g = 0; g < G; g++) {
                vf dot = qf[g][0] * key[0];
                for (int64_t i = 1; i < nv; i++) dot += qf[g][i] * key[i];
                dots[g][t] = dot;
            }
        }
        for (int64_t g = 0; g < G; g++) {
            for (int64_t t = cnt; t < CHUNK; t++) dots[g][t] = zero;
            hsum_chunk(dots[g], s[g]);
            for (int64_t t = cnt; t < CHUNK; t++) s[g][t] = -INFINITY;
            vf mv = *(vf *)s[g];
            for (int64_t j = VL; j < CHUNK; j += VL) {
                vf other = *(vf *)(s[g] + j);
                vi bigger = other > mv;
                mv = (vf)(((vi)other & bigger) | ((vi)mv & ~bigger));
            }
            float mx = hmax_v(mv);
            if (mx > m[g]) {
                float corr = expf(m[g] - mx); /* 0 on the first chunk */
                l[g] *= corr;
                for (int64_t i = 0; i < nv; i++) acc[g][i] *= corr;
                m[g] = mx;
            }
            vf total = zero;
            for (int64_t j = 0; j < CHUNK; j += VL) {
                vf p = vexp(*(vf *)(s[g] + j) - m[g]);
                for (int64_t t = 0; t < VL; t++)
                    if (j + t >= cnt) p[t] = 0.0f;
                *(vf *)(s[g] + j) = p;
                total += p;
            }
            l[g] += hsum_v(total);
        }
        for (int64_t t = 0; t < cnt; t++) {
            vf value[NV];
            for (int64_t i = 0; i < nv; i++) value[i] = load_row(v_cache, bf16, rows[t] + i * VL);
            for (int64_t g = 0; g < G; g++) {
                float w = s[g][t];
                for (int64_t i = 0; i < nv; i++) acc[g][i] += w * value[i];
            }
        }
    }
    for (int64_t g = 0; g < G; g++) {
        float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
        int64_t offset = (row * H + h * G + g) * D;
        for (int64_t i = 0; i < nv; i++) store_row(out, bf16, offset + i * VL, acc[g][i] * inv);
    }
}

/* q and out: [n, H, D]; k_cache, v_cache: [KV, num_slots, D]; block_tables: [n, max_blocks];
 * context_lens: [n]. dtype 0 is float32, 1 bfloat16 (q, the caches and out alike). */
void paged_decode_attention(const void *q, const void *k_cache, const void *v_cache, int64_t num_slots,
                            const int64_t *block_tables, int64_t max_blocks, const int64_t *context_lens,
                            int64_t n, int64_t H, int64_t KV, int64_t D, int64_t bs, int64_t window,
                            float scale, int64_t dtype, void *out, int64_t num_threads) {
    const int64_t G = H / KV;
    const int bf16 = dtype == 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads)
    for (int64_t item = 0; item < n * KV; item++) {
        int64_t row = item / KV, h = item % KV;
        const int64_t *table = block_tables + row * max_blocks;
#define ATTEND(GROUP, DIM, BF16)                                                                            \
    attend(q, k_cache, v_cache, num_slots, table, context_lens[row], row, h, H, GROUP, DIM, bs, window, scale, \
           BF16, out)
#define BY_GROUP(DIM, BF16)                        \
    switch (G) {                                   \
    case 1: ATTEND(1, DIM, BF16); break;           \
    case 2: ATTEND(2, DIM, BF16); break;           \
    case 3: ATTEND(3, DIM, BF16); break;           \
    case 4: ATTEND(4, DIM, BF16); break;           \
    case 7: ATTEND(7, DIM, BF16); break;           \
    default: ATTEND(G, DIM, BF16); break;          \
    }
        if (bf16) {
            if (D == 64) { BY_GROUP(64, 1) } else { ATTEND(G, D, 1); }
        } else {
            if (D == 64) { BY_GROUP(64, 0) } else { ATTEND(G, D, 0); }
        }
    }
}

/* Write T tokens' K and V ([T, KV, D] each, contiguous) into the caches at slots[t] of every head. */
void paged_store(const void *k, const void *v, void *k_cache, void *v_cache, int64_t num_slots,
                 const int64_t *slots, int64_t T, int64_t KV, int64_t D, int64_t elsize) {
    const int64_t row = D * elsize;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < KV; h++) {
            int64_t src = (t * KV + h) * row, dst = (h * num_slots + slots[t]) * row;
            memcpy((char *)k_cache + dst, (const char *)k + src, row);
            memcpy((char *)v_cache + dst, (const char *)v + src, row);
        }
    }
}

/* bf16 <-> fp32 for one value: exact widening, round-to-nearest-even narrowing (as torch does). */
static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits += 0x7FFF + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

/* bf16 arithmetic as torch does it: widen, compute in fp32, round the result */
static inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

/* Llama's RMSNorm over T rows of n values (row r at x + r * stride), as transformers computes it:
 * normalise in fp32, round to the input's dtype, then multiply by the weight in that dtype. */
__attribute__((optimize("fp-contract=off"))) void rms_norm(const void *x, int64_t stride, const void *weight,
                                                           void *out, int64_t T, int64_t n, float eps, int64_t dtype) {
    const int bf16 = dtype == 1;
    for (int64_t r = 0; r < T; r++) {
        float row[8192];
        const int64_t base = r * stride;
        vf acc = {0};
        int64_t i = 0;
        for (; i + VL <= n; i += VL) {
            vf v = load_row(x, bf16, base + i);
            *(vf_u *)(row + i) = v;
            acc += v * v;
        }
        float sum = 0.0f;
        for (int j = 0; j < VL; j++) sum += acc[j];
        for (; i < n; i++) {
            row[i] = bf16 ? bf16_to_f32(((const uint16_t *)x)[base + i]) : ((const float *)x)[base + i];
            sum += row[i] * row[i];
        }
        const float scale = 1.0f / sqrtf(sum / (float)n + eps);
        if (bf16) {
            const uint16_t *w = weight;
            uint16_t *o = (uint16_t *)out + r * n;
            for (int64_t j = 0; j < n; j++) o[j] = f32_to_bf16(bf16_to_f32(w[j]) * round_bf16(row[j] * scale));
        } else {
            const float *w = weight;
            float *o = (float *)out + r * n;
            for (int64_t j = 0; j < n; j++) o[j] = w[j] * (row[j] * scale);
        }
    }
}

/* Rotate-half RoPE for T tokens x H heads x D (token t's heads at x + t * stride, contiguous), with
 * per-token cos/sin [T, D]: out = x * cos + cat(-x2, x1) * sin, rounded after each product and the
 * sum in bf16 as torch's three ops are. out is contiguous [T, H, D]. */
__attribute__((optimize("fp-contract=off"))) void rotary(const void *x, int64_t stride, const void *cos,
                                                         const void *sin, void *out, int64_t T, int64_t H, int64_t D,
                                                         int64_t dtype) {
    const int bf16 = dtype == 1;
    const int64_t half = D / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++) {
            const int64_t in = t * stride + h * D, o = (t * H + h) * D, cs = t * D;
            if (bf16) {
                const uint16_t *xi = (const uint16_t *)x + in, *c = (const uint16_t *)cos + cs,
                               *s = (const uint16_t *)sin + cs;
                uint16_t *oi = (uint16_t *)out + o;
                for (int64_t j = 0; j < D; j++) {
                    float xv = bf16_to_f32(xi[j]);
                    float rv = j < half ? -bf16_to_f32(xi[j + half]) : bf16_to_f32(xi[j - half]);
                    float a = round_bf16(xv * bf16_to_f32(c[j])), b = round_bf16(rv * bf16_to_f32(s[j]));
                    oi[j] = f32_to_bf16(a + b);
                }
            } else {
                const float *xi = (const float *)x + in, *c = (const float *)cos + cs, *s = (const float *)sin + cs;
                float *oi = (float *)out + o;
                for (int64_t j = 0; j < D; j++) {
                    float rv = j < half ? -xi[j + half] : xi[j - half];
                    oi[j] = xi[j] * c[j] + rv * s[j];
                }
            }
        }
    }
}
