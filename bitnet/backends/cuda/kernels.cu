// CUDA kernels of the GPU forward pass (issue 12), built to SASS for sm_80..sm_120 and to PTX for sm_80 and newer
// (bitnet/backends/cuda/build.py; NVRTC compiles the same text at run time where nvcc was absent).
//
// Numerics follow the CPU kernels (bitnet/backends/cpu/kernels/src/kernels.h) so that the two backends can be compared
// bit for bit where the CPU result is exact: activation quantization, the ternary integer dots and their
// float finishing steps use the same operations in the same order, with `__f*_rn` intrinsics where nvcc would
// otherwise contract a multiply and an add into an FMA. Float reductions (RMSNorm, the LM head, attention) sum
// in another order than the CPU and agree to rounding.
//
// Ternary weight layout on the device, "I2G" (repacked from I2_S at load): each row holds K/16 32-bit words;
// element 16w + 4j + i of a row sits in bits 8i + 2j..8i + 2j + 1 of word w, as its code c = ternary + 1 (0..2).
// So (word >> 2j) & 0x03030303 is four int8 codes of elements 16w + 4j .. 16w + 4j + 3, ready for __dp4a
// against four int8 activations: one shift and one mask per four multiply-adds. Rows need K % 16 == 0.
//
// Every kernel is extern "C" so that its PTX entry keeps its name (the launcher looks kernels up by name).
// No toolkit headers: the same text compiles with nvcc and with NVRTC, which has no include path for them;
// halves are converted with the PTX cvt instructions (round to nearest even), bf16 by a shift.

#ifdef __CUDACC_RTC__
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
#else
#include <stdint.h>
#endif

#define F32_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float half_to_float(uint16_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ uint16_t float_to_half(float f) {
    uint16_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float bf16_to_float(uint16_t h) { return __int_as_float((int)((uint32_t)h << 16)); }

#define WARP 32
#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ int warp_sum_int(int v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Block-wide reductions for blocks of up to 1024 threads (a multiple of 32); `scratch` holds 32 values. The
// warps' results are padded with `pad` (0 serves the maximum too: it only ever takes absolute values).
template <typename V, V (*warp_reduce)(V)>
__device__ V block_reduce(V v, V *scratch, V pad) {
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nwarps = blockDim.x / WARP;
    v = warp_reduce(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : pad;
    return warp_reduce(v);
}

__device__ float block_sum(float v, float *scratch) { return block_reduce<float, warp_sum>(v, scratch, 0.0f); }
__device__ float block_max(float v, float *scratch) { return block_reduce<float, warp_max>(v, scratch, 0.0f); }
__device__ int block_sum_int(int v, int *scratch) { return block_reduce<int, warp_sum_int>(v, scratch, 0); }

struct QInfo {  // as bn_qinfo
    float scale;
    int32_t sum;
};

// The end of a float matmul's warp (one output row, T <= 8 tokens): each token's lane partials summed, stored
// or added to y.
__device__ __forceinline__ void store_rows(const float *acc, int T, float *y, int ldy, int row, int lane,
                                           int accumulate) {
    for (int t = 0; t < T && t < 8; t++) {
        const float s = warp_sum(acc[t]);
        if (lane == 0) y[(int64_t)t * ldy + row] = accumulate ? __fadd_rn(y[(int64_t)t * ldy + row], s) : s;
    }
}

// F16 or BF16 weights, two per 32-bit load, x float activations; one warp per row. K must be even: the 32-bit
// loads of w and the float2 loads of x need rows that start 4- and 8-byte aligned, and the loop has no tail for
// an odd last value; CudaTransformer refuses an F16/BF16 matrix with odd K at load (forward.py) rather than add
// a per-row tail to the hot loop of the LM head.
template <bool BF16>
__device__ __forceinline__ void half_matmul(const uint16_t *__restrict__ w, int K, int M,
                                            const float *__restrict__ x, int T, float *__restrict__ y, int ldy,
                                            int accumulate) {
    const int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (row >= M) return;
    const uint32_t *wr = (const uint32_t *)(w + (int64_t)row * K);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = lane; i < K / 2; i += WARP) {
        const uint32_t pair = __ldg(wr + i);
        const uint16_t lo = (uint16_t)pair, hi = (uint16_t)(pair >> 16);
        const float2 wf = BF16 ? make_float2(bf16_to_float(lo), bf16_to_float(hi))
                               : make_float2(half_to_float(lo), half_to_float(hi));
        for (int t = 0; t < T && t < 8; t++) {
            const float2 xv = *(const float2 *)(x + (int64_t)t * K + 2 * i);
            acc[t] = fmaf(wf.y, xv.y, fmaf(wf.x, xv.x, acc[t]));
        }
    }
    store_rows(acc, T, y, ldy, row, lane, accumulate);
}

extern "C" {

// ---- (FFN gating,) RMSNorm, then per-token activation quantization, one block per token: x[T, n] -> q[T, n],
// info[T]. The value at i is x itself, or with gating 1 / 2 the FFN gating relu²(x) * up / SiLU(x) * up as
// relu2_mul / silu_mul compute it; with do_norm that value times 1 / sqrt(mean(value^2) + eps), times w (w may be
// NULL), as rmsnorm computes it. The ternary matmuls read only q and info, so neither the gated nor the
// normalised floats are stored: each pass recomputes them (the same operations, so the same bits).
// s = (float)(127 / max(1e-5, amax)) in double; q = rint(v * s) clamped to [-128, 127] (NaN -> -128). ----
#define GATING_NONE 0
#define GATING_RELU2 1
#define GATING_SILU 2

__device__ __forceinline__ float gated(const float *xt, const float *ut, int i, int gating) {
    const float g = xt[i];
    if (gating == GATING_RELU2) {
        const float r = g > 0.0f ? g : 0.0f;
        return __fmul_rn(__fmul_rn(r, r), ut[i]);
    }
    if (gating == GATING_SILU) return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), ut[i]);
    return g;
}

__device__ __forceinline__ float normed(float v, const float *w, int i, float scale, int do_norm) {
    if (!do_norm) return v;
    v = __fmul_rn(v, scale);
    return w ? __fmul_rn(v, w[i]) : v;
}

__device__ float rms_scale(const float *xt, const float *ut, int gating, int n, float eps, float *scratch) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = gated(xt, ut, i, gating);
        ss = fmaf(v, v, ss);
    }
    ss = block_sum(ss, scratch);
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)n), eps)));
}

__global__ void norm_quant(const float *__restrict__ x, const float *__restrict__ up, int gating,
                           const float *__restrict__ w, int n, float eps, int do_norm, int8_t *__restrict__ q,
                           QInfo *__restrict__ info) {
    __shared__ float fscratch[WARP];
    __shared__ int iscratch[WARP];
    const float *xt = x + (int64_t)blockIdx.x * n, *ut = up ? up + (int64_t)blockIdx.x * n : up;
    int8_t *qt = q + (int64_t)blockIdx.x * n;
    const float scale = do_norm ? rms_scale(xt, ut, gating, n, eps, fscratch) : 1.0f;
    float amax = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        amax = fmaxf(amax, fabsf(normed(gated(xt, ut, i, gating), w, i, scale, do_norm)));
    amax = block_max(amax, fscratch);
    const double a = (double)amax > 1e-5 ? (double)amax : 1e-5;
    const float s = (float)(127.0 / a);
    int sum = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = rintf(__fmul_rn(normed(gated(xt, ut, i, gating), w, i, scale, do_norm), s));
        v = v > 127.0f ? 127.0f : v;
        v = v >= -128.0f ? v : -128.0f;
        qt[i] = (int8_t)v;
        sum += (int)v;
    }
    sum = block_sum_int(sum, iscratch);
    if (threadIdx.x == 0) {
        info[blockIdx.x].scale = s;
        info[blockIdx.x].sum = sum;
    }
}

// ---- ternary W2A8 matmul on I2G weights: one warp per output row, T (1..8) tokens per launch ----
// Up to three matrices reading the same input run in one launch (q, k and v; gate and up): rows [0, M0) are
// matrix 0's, the next M1 matrix 1's, the next M2 matrix 2's, each written to its own y_i[T, M_i]. The integer
// dot sum(c * q) is exact (dp4a into int32); v = ((float)dot - (float)sum) / s * wscale as on the CPU, stored,
// or with `accumulate` added to y (the residual connection, x += W h, fused).
__global__ void i2g_matmul(const uint32_t *__restrict__ w0, const uint32_t *__restrict__ w1,
                           const uint32_t *__restrict__ w2, int K, int M0, int M1, int M2,
                           const int8_t *__restrict__ q, const QInfo *__restrict__ info, int T, float s0, float s1,
                           float s2, float *__restrict__ y0, float *__restrict__ y1, float *__restrict__ y2,
                           int accumulate) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= M0 + M1 + M2) return;
    const uint32_t *w = w0;
    float wscale = s0, *y = y0;
    int M = M0;
    if (row >= M0 + M1) {
        row -= M0 + M1;
        w = w2, wscale = s2, y = y2, M = M2;
    } else if (row >= M0) {
        row -= M0;
        w = w1, wscale = s1, y = y1, M = M1;
    }
    const int words = K / 16;
    const uint32_t *wr = w + (int64_t)row * words;
    int acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int wi = lane; wi < words; wi += WARP) {
        const uint32_t word = __ldg(wr + wi);
        const int c0 = (int)(word & 0x03030303u), c1 = (int)((word >> 2) & 0x03030303u);
        const int c2 = (int)((word >> 4) & 0x03030303u), c3 = (int)((word >> 6) & 0x03030303u);
        for (int t = 0; t < T && t < 8; t++) {
            const int4 a = __ldg((const int4 *)(q + (int64_t)t * K + 16 * wi));
            acc[t] = __dp4a(c3, a.w, __dp4a(c2, a.z, __dp4a(c1, a.y, __dp4a(c0, a.x, acc[t]))));
        }
    }
    for (int t = 0; t < T && t < 8; t++) {
        const int dot = warp_sum_int(acc[t]);
        if (lane == 0) {
            const float v = __fmul_rn(__fdiv_rn(__fsub_rn((float)dot, (float)info[t].sum), info[t].scale), wscale);
            float *dst = y + (int64_t)t * M + row;
            *dst = accumulate ? __fadd_rn(*dst, v) : v;
        }
    }
}

// ---- float-weight matmuls (the LM head, float layers): one warp per row, fp32 accumulation, T (1..8) tokens;
// `accumulate` adds the result to y as i2g_matmul does ----
__global__ void f16_matmul(const uint16_t *__restrict__ w, int K, int M, const float *__restrict__ x, int T,
                           float *__restrict__ y, int ldy, int accumulate) {
    half_matmul<false>(w, K, M, x, T, y, ldy, accumulate);
}

__global__ void bf16_matmul(const uint16_t *__restrict__ w, int K, int M, const float *__restrict__ x, int T,
                            float *__restrict__ y, int ldy, int accumulate) {
    half_matmul<true>(w, K, M, x, T, y, ldy, accumulate);
}

__global__ void f32_matmul(const float *__restrict__ w, int K, int M, const float *__restrict__ x, int T,
                           float *__restrict__ y, int ldy, int accumulate) {
    const int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (row >= M) return;
    const float *wr = w + (int64_t)row * K;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = lane; i < K; i += WARP) {
        const float wv = __ldg(wr + i);
        for (int t = 0; t < T && t < 8; t++) acc[t] = fmaf(wv, x[(int64_t)t * K + i], acc[t]);
    }
    store_rows(acc, T, y, ldy, row, lane, accumulate);
}

// Q8_0 weights (blocks of 32: f16 d, int8 qs[32]; 34 bytes) x float activations: one warp per row, a lane per
// block at a time. A block is 34 = 2 x 17 bytes, so it is only 2-byte aligned (rows of an odd number of blocks
// put every other row at an odd multiple of 2): its scale and quants are read as 17 aligned 16-bit loads, two of
// them making the four int8 of a 32-bit word, instead of 32 byte loads. x is read as float4: a block's 32
// activations start 128-byte aligned (K % 32 == 0, and the launcher's x offsets are whole rows). The sum runs
// over i = 0..31 in order, as the byte loop did.
__global__ void q80_matmul(const uint8_t *__restrict__ w, int K, int M, const float *__restrict__ x, int T,
                           float *__restrict__ y, int ldy, int accumulate) {
    const int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (row >= M) return;
    const int nb = K / 32;
    const uint16_t *wr = (const uint16_t *)(w + (int64_t)row * nb * 34);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int b = lane; b < nb; b += WARP) {
        const uint16_t *blk = wr + b * 17;
        const float d = half_to_float(__ldg(blk));
        int qw[8];
#pragma unroll
        for (int j = 0; j < 8; j++) qw[j] = (int)__ldg(blk + 1 + 2 * j) | ((int)__ldg(blk + 2 + 2 * j) << 16);
        for (int t = 0; t < T && t < 8; t++) {
            const float4 *xb = (const float4 *)(x + (int64_t)t * K + 32 * b);
            float s = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float4 xv = xb[j];
                s = fmaf((float)(int8_t)qw[j], xv.x, s);
                s = fmaf((float)(int8_t)(qw[j] >> 8), xv.y, s);
                s = fmaf((float)(int8_t)(qw[j] >> 16), xv.z, s);
                s = fmaf((float)(qw[j] >> 24), xv.w, s);      // arithmetic shift: the top byte, signed
            }
            acc[t] = fmaf(d, s, acc[t]);
        }
    }
    store_rows(acc, T, y, ldy, row, lane, accumulate);
}

// ---- RMSNorm: one block per token; out = (x * (1 / sqrt(mean(x^2) + eps))) * w (w may be NULL) ----
__global__ void rmsnorm(const float *__restrict__ x, const float *__restrict__ w, int n, float eps,
                        float *__restrict__ out) {
    __shared__ float scratch[WARP];
    const float *xt = x + (int64_t)blockIdx.x * n;
    float *ot = out + (int64_t)blockIdx.x * n;
    const float scale = rms_scale(xt, NULL, GATING_NONE, n, eps, scratch);
    for (int i = threadIdx.x; i < n; i += blockDim.x) ot[i] = normed(xt[i], w, i, scale, 1);
}

// ---- RoPE of q and k, and k, v into the f16 cache (round to nearest even, as bn_f32_to_f16), one launch ----
// q[T, n_head * head_dim] is rotated in place; k[T, kv_dim] is rotated into the cache at row pos[t], v copied
// there. cs[p * head_dim + 2i, +1] = cos, sin of position p's angles (bitnet.backends.cpu.kernels.rope_table, uploaded once).
// Grid (ceil(work / blockDim.x), T) over work = (n_head + n_head_kv) * head_dim / 2 pairs + kv_dim values of v.
__device__ __forceinline__ void rotate(float *v, int i, int half, int neox, float c, float s, float *o0,
                                       float *o1) {
    const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float p = v[i0], r = v[i1];
    *o0 = __fsub_rn(__fmul_rn(p, c), __fmul_rn(r, s));
    *o1 = __fadd_rn(__fmul_rn(p, s), __fmul_rn(r, c));
}

__global__ void rope_store(float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                           int n_head, int n_head_kv, int head_dim, const float *__restrict__ cs,
                           const int *__restrict__ pos, int neox, uint16_t *__restrict__ kcache,
                           uint16_t *__restrict__ vcache) {
    const int t = blockIdx.y, half = head_dim / 2, kv_dim = n_head_kv * head_dim;
    const int q_pairs = n_head * half, k_pairs = n_head_kv * half;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    const float *a = cs + (int64_t)pos[t] * head_dim;
    const int64_t row = (int64_t)pos[t] * kv_dim;
    if (idx < q_pairs) {
        const int h = idx / half, i = idx % half;
        float *qh = q + ((int64_t)t * n_head + h) * head_dim;
        float o0, o1;
        rotate(qh, i, half, neox, a[2 * i], a[2 * i + 1], &o0, &o1);
        qh[neox ? i : 2 * i] = o0;
        qh[neox ? i + half : 2 * i + 1] = o1;
        return;
    }
    idx -= q_pairs;
    if (idx < k_pairs) {
        const int h = idx / half, i = idx % half;
        float o0, o1;
        rotate((float *)k + (int64_t)t * kv_dim + h * head_dim, i, half, neox, a[2 * i], a[2 * i + 1], &o0, &o1);
        uint16_t *kh = kcache + row + h * head_dim;
        kh[neox ? i : 2 * i] = float_to_half(o0);
        kh[neox ? i + half : 2 * i + 1] = float_to_half(o1);
        return;
    }
    idx -= k_pairs;
    if (idx < kv_dim) vcache[row + idx] = float_to_half(v[(int64_t)t * kv_dim + idx]);
}

// ---- FFN gating: elementwise over n values, out = gating(gate) * up. The forward pass runs it in place (out ==
// gate: the float path gates s['gate'] where it lies, with no second n_ff-wide buffer), so gate and out are not
// __restrict__: with the qualifier, one object reached through both would be undefined behaviour. In place is
// well defined without it: element i is read and then written by the one thread that owns i. ----
__global__ void relu2_mul(const float *gate, const float *__restrict__ up, int64_t n, float *out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = gated(gate + i, up + i, 0, GATING_RELU2);
}

__global__ void silu_mul(const float *gate, const float *__restrict__ up, int64_t n, float *out) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = gated(gate + i, up + i, 0, GATING_SILU);
}

// ---- attention over the f16 cache, split-K (flash-decoding): grid (n_head, n_split, T). Block (h, s, t) takes
// positions [s * chunk, min((s + 1) * chunk, n_kv_t)) of query head h of token t (n_kv_t = pos[t] + 1, causal)
// and writes its running max, sum of exponentials and unnormalised output; attention_combine merges the splits.
// Each warp of the block walks every nw-th position of the range, its lanes holding dimensions lane + 32j of the
// head (head_dim <= 256), so a score is a warp reduction (shuffles, no block barrier); the warps then merge. ----
#define ATT_MAX_WARPS 8
#define HD_SLOTS 8     // 256 / WARP

__global__ void attention_split(const float *__restrict__ q, const uint16_t *__restrict__ kcache,
                                const uint16_t *__restrict__ vcache, int n_head, int n_head_kv, int head_dim,
                                const int *__restrict__ pos, int chunk, float scale, float *__restrict__ part_o,
                                float *__restrict__ part_ml) {
    __shared__ float warp_ml[ATT_MAX_WARPS][2];
    __shared__ float warp_o[ATT_MAX_WARPS][HD_SLOTS * WARP];
    const int h = blockIdx.x, s = blockIdx.y, t = blockIdx.z, n_split = gridDim.y;
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nw = blockDim.x / WARP;
    const int kvh = h / (n_head / n_head_kv), kv_dim = n_head_kv * head_dim;
    const int n_kv = pos[t] + 1, p0 = s * chunk, p1 = min(p0 + chunk, n_kv);
    const float *qh = q + ((int64_t)t * n_head + h) * head_dim;
    float qv[HD_SLOTS], o[HD_SLOTS];
#pragma unroll
    for (int j = 0; j < HD_SLOTS; j++) {
        const int d = lane + WARP * j;
        qv[j] = d < head_dim ? qh[d] : 0.0f;
        o[j] = 0.0f;
    }
    float m = -F32_INF, l = 0.0f;
    for (int p = p0 + warp; p < p1; p += nw) {
        const uint16_t *kr = kcache + (int64_t)p * kv_dim + kvh * head_dim;
        const uint16_t *vr = vcache + (int64_t)p * kv_dim + kvh * head_dim;
        float part = 0.0f;
#pragma unroll
        for (int j = 0; j < HD_SLOTS; j++) {
            const int d = lane + WARP * j;
            if (d < head_dim) part = fmaf(qv[j], half_to_float(kr[d]), part);
        }
        const float score = warp_sum(part) * scale;
        const float mn = fmaxf(m, score), corr = expf(m - mn), e = expf(score - mn);
        l = l * corr + e;
#pragma unroll
        for (int j = 0; j < HD_SLOTS; j++) {
            const int d = lane + WARP * j;
            if (d < head_dim) o[j] = o[j] * corr + e * half_to_float(vr[d]);
        }
        m = mn;
    }
    if (lane == 0) {
        warp_ml[warp][0] = m;
        warp_ml[warp][1] = l;
    }
#pragma unroll
    for (int j = 0; j < HD_SLOTS; j++) warp_o[warp][lane + WARP * j] = o[j];
    __syncthreads();
    if (warp != 0) return;
    float mb = -F32_INF;
    for (int w = 0; w < nw; w++) mb = fmaxf(mb, warp_ml[w][0]);
    float lb = 0.0f, ob[HD_SLOTS];
#pragma unroll
    for (int j = 0; j < HD_SLOTS; j++) ob[j] = 0.0f;
    for (int w = 0; w < nw; w++) {
        if (warp_ml[w][0] == -F32_INF) continue;      // a warp that had no position
        const float c = expf(warp_ml[w][0] - mb);
        lb += c * warp_ml[w][1];
#pragma unroll
        for (int j = 0; j < HD_SLOTS; j++) ob[j] += c * warp_o[w][lane + WARP * j];
    }
    const int64_t slot = ((int64_t)t * n_head + h) * n_split + s;
#pragma unroll
    for (int j = 0; j < HD_SLOTS; j++) {
        const int d = lane + WARP * j;
        if (d < head_dim) part_o[slot * head_dim + d] = ob[j];
    }
    if (lane == 0) {
        part_ml[2 * slot] = mb;      // -inf for an empty split
        part_ml[2 * slot + 1] = lb;
    }
}

__global__ void attention_combine(const float *__restrict__ part_o, const float *__restrict__ part_ml, int n_head,
                                  int head_dim, int n_split, float *__restrict__ out) {
    const int h = blockIdx.x, t = blockIdx.y, d = threadIdx.x;
    if (d >= head_dim) return;
    const int64_t base = ((int64_t)t * n_head + h) * n_split;
    float m = -F32_INF;
    for (int s = 0; s < n_split; s++) m = fmaxf(m, part_ml[2 * (base + s)]);
    float l = 0.0f, o = 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float ms = part_ml[2 * (base + s)];
        if (ms == -F32_INF) continue;
        const float c = expf(ms - m);
        l += c * part_ml[2 * (base + s) + 1];
        o += c * part_o[(base + s) * head_dim + d];
    }
    out[((int64_t)t * n_head + h) * head_dim + d] = o / l;
}

// ---- token embedding rows (F16 / BF16 / F32 / Q8_0, ggml type ids 1 / 30 / 0 / 8) for T tokens ----
__global__ void embed_rows(const uint8_t *__restrict__ table, int gtype, int K, const int *__restrict__ tokens,
                           float *__restrict__ out) {
    const int t = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= K) return;
    const int64_t r = tokens[t];
    float v;
    if (gtype == 1) {
        v = half_to_float(((const uint16_t *)table)[r * K + i]);
    } else if (gtype == 30) {
        v = bf16_to_float(((const uint16_t *)table)[r * K + i]);
    } else if (gtype == 8) {
        const uint8_t *blk = table + (r * (K / 32) + i / 32) * 34;
        const float d = half_to_float((uint16_t)(blk[0] | (blk[1] << 8)));
        v = __fmul_rn(d, (float)(int8_t)blk[2 + i % 32]);
    } else {
        v = ((const float *)table)[r * K + i];
    }
    out[(int64_t)t * K + i] = v;
}

// ---- greedy sampling on the device, in two stages: one block over 128,256 logits would keep one SM busy
// while the rest idle. argmax_blocks: each of gridDim.x blocks takes a contiguous span of the logits and writes
// its best (value, first index) and whether it saw a NaN or infinity to part[blockIdx.x]; argmax (one block)
// merges the parts. out[0] = the first index of the largest finite logit (numpy's argmax over the finite ones,
// 0 when none is finite), out[1] = 1 if any logit is NaN or infinite (the host then fails as the CPU path
// does). Ties go to the smaller index at every step, so the result does not depend on the grid. ----
#define NO_INDEX 0x7fffffff

struct ArgBest {   // 16 bytes: forward.py sizes s['argmax'] as 16 per block
    float v;
    int i;
    int bad;
    int pad;
};

__device__ __forceinline__ void take_better(float &bv, int &bi, float ov, int oi) {
    if (ov > bv || (ov == bv && oi < bi)) {
        bv = ov;
        bi = oi;
    }
}

// The block's best (bv, bi) into thread 0's, and the OR of `bad` into every thread's (blockDim.x <= 1024, a
// multiple of 32).
__device__ void block_argbest(float &bv, int &bi, int &bad) {
    __shared__ float sv[WARP];
    __shared__ int si[WARP];
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nw = blockDim.x / WARP;
    for (int o = WARP / 2; o > 0; o >>= 1)
        take_better(bv, bi, __shfl_xor_sync(FULL_MASK, bv, o), __shfl_xor_sync(FULL_MASK, bi, o));
    bad = __syncthreads_or(bad);
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        bv = lane < nw ? sv[lane] : -F32_INF;
        bi = lane < nw ? si[lane] : NO_INDEX;
        for (int o = WARP / 2; o > 0; o >>= 1)
            take_better(bv, bi, __shfl_xor_sync(FULL_MASK, bv, o), __shfl_xor_sync(FULL_MASK, bi, o));
    }
}

__global__ void argmax_blocks(const float *__restrict__ logits, int n, ArgBest *__restrict__ part) {
    const int span = (n + gridDim.x - 1) / gridDim.x, start = blockIdx.x * span, end = min(start + span, n);
    float bv = -F32_INF;
    int bi = NO_INDEX, bad = 0;
    for (int i = start + threadIdx.x; i < end; i += blockDim.x) {   // increasing i: '>' keeps the first maximum
        const float v = logits[i];
        if (!isfinite(v)) bad = 1;
        else if (v > bv) {
            bv = v;
            bi = i;
        }
    }
    block_argbest(bv, bi, bad);
    if (threadIdx.x == 0) {
        part[blockIdx.x].v = bv;
        part[blockIdx.x].i = bi;
        part[blockIdx.x].bad = bad;
    }
}

__global__ void argmax(const ArgBest *__restrict__ part, int nparts, int *__restrict__ out) {
    float bv = -F32_INF;
    int bi = NO_INDEX, bad = 0;
    for (int p = threadIdx.x; p < nparts; p += blockDim.x) {
        take_better(bv, bi, part[p].v, part[p].i);
        bad |= part[p].bad;
    }
    block_argbest(bv, bi, bad);
    if (threadIdx.x == 0) {
        out[0] = bi == NO_INDEX ? 0 : bi;
        out[1] = bad;
    }
}

}  // extern "C"
