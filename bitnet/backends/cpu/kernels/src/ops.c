/* Portable light ops of the forward pass (norms, rope, softmax, activations, conversions).
 *
 * They touch O(hidden) data per token, next to the O(hidden^2) matmuls, so plain C that the compiler may
 * auto-vectorise is enough; what matters is matching the reference's numerics (noted per function).
 */
#include <math.h>

#include "kernels_internal.h"

/* x / sqrt(mean(x^2) + eps) * w. As the reference: squares in float, summed in double, the mean rounded to
 * float, scale = 1/sqrtf(mean + eps), then (x*scale)*w. w may be NULL (no weight). The double sum runs in four
 * interleaved partial sums: one chain of dependent double adds cost a 6912-wide norm four cycles an element
 * (2% of a prefill); the reordering changes the sum by ~1e-16 relative, far below the float mean's rounding. */
void bn_rmsnorm(const float *x, const float *w, int64_t n, float eps, float *out) {
    double part[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++) part[j] += (double)(x[i + j] * x[i + j]);
    for (; i < n; i++) part[0] += (double)(x[i] * x[i]);
    const double ss = (part[0] + part[1]) + (part[2] + part[3]);
    const float mean = (float)(ss / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    if (w) {
        for (int64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
    } else {
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale;
    }
}

/* Rotary embedding in place on n_heads rows of head_dim; only the first rope_dim entries of a head rotate.
 * Pair i (i < rope_dim/2) is (i, i + rope_dim/2) for NEOX, (2i, 2i+1) for NORM; theta_i = pos * base^(-2i/rope_dim),
 * computed in double (more accurate than the reference's running float product; the difference is far below
 * the f16 K cache rounding). */
void bn_rope_angles(int64_t pos, int64_t rope_dim, float base, float *cs) {
    for (int64_t i = 0; i < rope_dim / 2; i++) {
        const double theta = (double)pos * pow((double)base, -2.0 * (double)i / (double)rope_dim);
        cs[2 * i] = (float)cos(theta);
        cs[2 * i + 1] = (float)sin(theta);
    }
}

void bn_rope_apply(float *x, int64_t n_heads, int64_t head_dim, int64_t rope_dim, const float *cs, int neox) {
    const int64_t half = rope_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        for (int64_t h = 0; h < n_heads; h++) {
            float *v = x + h * head_dim;
            const float a = v[i0], b = v[i1];
            v[i0] = a * c - b * s;
            v[i1] = a * s + b * c;
        }
    }
}

/* exp(x - max) / sum, the sum in double. A row of -inf (fully masked) gives zeros rather than NaN. */
void bn_softmax(float *x, int64_t n) { bn_softmax_ml(x, n, NULL); }

/* bn_softmax that also reports the max and the sum of the exponentials (ml[0], ml[1]; -inf and 0 when nothing is
 * attended), which merging attention spans needs. */
void bn_softmax_ml(float *x, int64_t n, float *ml) {
    if (ml) ml[0] = -INFINITY, ml[1] = 0.0f;
    if (n <= 0) return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (mx == -INFINITY) {
        for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
    if (ml) ml[0] = mx, ml[1] = (float)sum;
}

/* Each span's output is already normalised by its own sum; folding (m, l, o) with (m', l', o') rescales both sums
 * to the larger max and takes the weighted mean of the two outputs. */
void bn_attention_fold(float *acc, float *acc_ml, const float *part, const float *part_ml, int64_t n_q,
                       int64_t head_dim) {
    for (int64_t h = 0; h < n_q; h++) {
        float *o = acc + h * head_dim;
        const float *oi = part + h * head_dim;
        const float m = acc_ml[2 * h], l = acc_ml[2 * h + 1], mi = part_ml[2 * h], li = part_ml[2 * h + 1];
        const float mx = mi > m ? mi : m;
        if (mx == -INFINITY) continue;      /* neither attended anything: zeros stay zeros */
        const float a = l * expf(m - mx), b = li * expf(mi - mx), sum = a + b;
        const float wa = a / sum, wb = b / sum;
        for (int64_t d = 0; d < head_dim; d++) o[d] = o[d] * wa + oi[d] * wb;
        acc_ml[2 * h] = mx;
        acc_ml[2 * h + 1] = sum;
    }
}

void bn_relu2_mul(const float *gate, const float *up, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i] > 0.0f ? gate[i] : 0.0f;
        out[i] = g * g * up[i];
    }
}

void bn_silu_mul(const float *gate, const float *up, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* float -> IEEE half, round to nearest even, with overflow to inf, subnormals and NaN kept NaN. */
static uint16_t float_to_half(float f) {
    uint32_t x;
    BN_MEMCPY(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (quiet the nan, keep some payload) */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u));
    if (ax >= 0x477ff000u) /* >= 65520: rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
        if (ax < 0x33000000u) return sign; /* < 2^-25: rounds to zero (2^-25 itself is a tie to even 0) */
        const uint32_t e = ax >> 23;
        const uint32_t man = (ax & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14..24: value = man * 2^(e-150), half unit = 2^-24 */
        uint32_t h = man >> shift;
        const uint32_t rem = man & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    /* normal: rebias the exponent, round the 13 dropped mantissa bits to even (a carry may bump the exponent) */
    uint32_t h = ((ax - 0x38000000u) >> 13);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

void bn_f32_to_f16(const float *x, bn_f16 *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = float_to_half(x[i]);
}

void bn_f16_to_f32(const bn_f16 *x, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = bn_half_to_float(x[i]);
}

void bn_bf16_to_f32(const uint16_t *x, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = bn_bf16_to_float(x[i]);
}

float bn_f16_scalar_to_f32(bn_f16 h) { return bn_half_to_float(h); }

/* Block scale and codes of ggml's Q8_0 quantizer: d = amax / 127, q = roundf(x * (1 / d)). */
static float q8_block(const float *x, int8_t *q) {
    float amax = 0.0f;
    for (int j = 0; j < BN_Q80_BLOCK; j++) {
        const float a = x[j] < 0 ? -x[j] : x[j];
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < BN_Q80_BLOCK; j++) q[j] = (int8_t)__builtin_roundf(x[j] * id);
    return d;
}

void bn_quantize_q8(const float *x, int64_t K, int8_t *q, float *d) {
    for (int64_t b = 0; b < K / BN_Q80_BLOCK; b++) d[b] = q8_block(x + b * BN_Q80_BLOCK, q + b * BN_Q80_BLOCK);
}

void bn_encode_q80_row(const float *x, int64_t K, uint8_t *out) {
    for (int64_t b = 0; b < K / BN_Q80_BLOCK; b++) {
        uint8_t *blk = out + b * BN_Q80_BLOCK_BYTES;
        const uint16_t h = float_to_half(q8_block(x + b * BN_Q80_BLOCK, (int8_t *)(blk + 2)));
        blk[0] = (uint8_t)(h & 0xff);
        blk[1] = (uint8_t)(h >> 8);
    }
}

int bn_dequant_row(int ggml_type, const uint8_t *data, int64_t K, int64_t row, float *out) {
    switch (ggml_type) {
    case BN_T_F32:
        BN_MEMCPY(out, data + row * K * 4, (size_t)K * 4);
        return 0;
    case BN_T_F16:
        for (int64_t k = 0; k < K; k++) out[k] = bn_half_to_float(bn_load_u16(data + (row * K + k) * 2));
        return 0;
    case BN_T_BF16:
        for (int64_t k = 0; k < K; k++) out[k] = bn_bf16_to_float(bn_load_u16(data + (row * K + k) * 2));
        return 0;
    case BN_T_Q8_0: {
        if (K % BN_Q80_BLOCK != 0) return -1;
        const int64_t nb = K / BN_Q80_BLOCK;
        const uint8_t *r = data + row * nb * BN_Q80_BLOCK_BYTES;
        for (int64_t b = 0; b < nb; b++) {
            const float d = bn_half_to_float(bn_load_u16(r + b * BN_Q80_BLOCK_BYTES));
            const int8_t *qs = (const int8_t *)(r + b * BN_Q80_BLOCK_BYTES + 2);
            for (int j = 0; j < BN_Q80_BLOCK; j++) out[b * BN_Q80_BLOCK + j] = d * (float)qs[j];
        }
        return 0;
    }
    default:
        return -1;
    }
}
