/* llmos q8 linear: y = x @ W^T for a few rows of float32 x and int8 W (one scale per output row).
 *
 * x is quantized on the fly to int8 in blocks of 32 values, each block with its own scale (as
 * llama.cpp's Q8_0 does for activations), so a block's dot product with a weight row is 32 int8
 * products summed in int32 (AVX2 maddubs/madd) and scaled once. The weights are read once per call
 * whatever the number of rows; a decode step is bound by reading them.
 *
 * Built by llmos/layers/q8.py with the system C compiler (-O3 -mavx2 -mfma) and called through
 * ctypes; single-threaded (the caller may split the output rows across threads).
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define QK 32

static inline float hsum_ps(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 shuf = _mm_movehdup_ps(lo);
    __m128 sums = _mm_add_ps(lo, shuf);
    shuf = _mm_movehl_ps(shuf, sums);
    sums = _mm_add_ss(sums, shuf);
    return _mm_cvtss_f32(sums);
}

/* One row of k floats into k int8 and k/32 scales: scale = max|x| / 127 per block. */
static void quantize_row(const float *x, int64_t k, int8_t *q, float *scales) {
    for (int64_t b = 0; b < k / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0.0f;
        for (int i = 0; i < QK; i++) {
            float a = fabsf(xb[i]);
            amax = a > amax ? a : amax;
        }
        float d = amax / 127.0f;
        float id = d > 0.0f ? 1.0f / d : 0.0f;
        scales[b] = d;
        for (int i = 0; i < QK; i++) q[b * QK + i] = (int8_t)lrintf(xb[i] * id);
    }
}

/* The int32 dot products of one 32-byte block of weights and of activations, as 8 lanes. The
 * weights are in [-127, 127], so |w| fits the unsigned operand of maddubs and the sign moves to x. */
static inline __m256i block_dot(__m256i w, __m256i x, __m256i ones) {
    __m256i aw = _mm256_sign_epi8(w, w);
    __m256i sx = _mm256_sign_epi8(x, w);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
}

/* x: [m, k] float32; w: [n, k] int8; w_scales: [n] float32; out: [m, n] float32.
 * xq: [m, k] int8 and x_scales: [m, k/32] float32 are scratch. k is a multiple of 32; rows
 * [n_begin, n_end) of the output are computed (x is quantized by every caller: it is small). */
void q8_linear(const float *x, int64_t m, int64_t k, const int8_t *w, const float *w_scales,
               int64_t n_begin, int64_t n_end, int64_t n, float *out, int8_t *xq, float *x_scales) {
    const int64_t kb = k / QK;
    for (int64_t r = 0; r < m; r++) quantize_row(x + r * k, k, xq + r * k, x_scales + r * kb);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t j = n_begin; j < n_end; j++) {
        const int8_t *wr = w + j * k;
        for (int64_t r = 0; r < m; r++) {
            const int8_t *xr = xq + r * k;
            const float *sr = x_scales + r * kb;
            __m256 acc0 = _mm256_setzero_ps();
            __m256 acc1 = _mm256_setzero_ps();
            int64_t b = 0;
            for (; b + 1 < kb; b += 2) {  /* two chains, so the FMAs overlap */
                __m256i w0 = _mm256_loadu_si256((const __m256i *)(wr + b * QK));
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(xr + b * QK));
                __m256i w1 = _mm256_loadu_si256((const __m256i *)(wr + (b + 1) * QK));
                __m256i x1 = _mm256_loadu_si256((const __m256i *)(xr + (b + 1) * QK));
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(w0, x0, ones)), _mm256_broadcast_ss(sr + b), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(w1, x1, ones)), _mm256_broadcast_ss(sr + b + 1), acc1);
            }
            if (b < kb) {
                __m256i w0 = _mm256_loadu_si256((const __m256i *)(wr + b * QK));
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(xr + b * QK));
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot(w0, x0, ones)), _mm256_broadcast_ss(sr + b), acc0);
            }
            out[r * n + j] = hsum_ps(_mm256_add_ps(acc0, acc1)) * w_scales[j];
        }
    }
}
