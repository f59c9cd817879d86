/* Body of one x86 variant, included by kernels_x86.c once per instruction set (a C "template").
 *
 * The including file defines:
 *   BN_NAME(x)   prefixes the variant's static names          (avx2_x / avx512_x)
 *   BN_FN        static always-inline + the variant's target attribute
 *   BN_API       static + the variant's target attribute (table entries)
 *   BN_VARIANT   enum bn_variant of the table
 *   BN_GETTER    name of the exported table getter
 *   BN_VNNI      1: the ternary dot uses vpdpbusd (AVX-512 VNNI on 256-bit vectors), 0: vpmaddubsw (AVX2)
 *   BN_WIDE_REGS 1: 32 vector registers (AVX-512VL), so multi-token tiles take more rows (default 0)
 *   BN_ZMM       1: 512-bit vectors where they keep the 256-bit body's bits (the f16 attention; default 0)
 *
 * Everything uses 256-bit vectors; the two variants differ only in the ternary dot primitive, tile sizes and the f16
 * attention (BN_ZMM), which computes the 256-bit body's float operations in 512-bit registers: the AVX-512 path
 * is the AVX2 path's code, and where it is not, it gives the AVX2 path's bits (tested on machines with AVX-512).
 *
 * Integer bounds (why nothing wraps, for any int8 activations and K <= 2^20):
 *  - AVX2: vpmaddubsw multiplies unsigned codes c by signed q and adds adjacent pairs into int16 with signed
 *    saturation. With c <= 2 (I2_S after the code-3 remap, TQ1_0 digits) a pair lies in [-512, 508], a dot4
 *    (4 planes) in [-2048, 2032], and 16 dot4 results in [-32768, 32512]: an int16 accumulator holds exactly 16
 *    blocks, then it is widened (vpmaddwd by 1) into int32. TQ2_0 admits code 3: a pair lies in [-768, 762] and
 *    a 256-element block (2 dot4) in [-6144, 6096]; TQ blocks are widened after each block.
 *  - VNNI: vpdpbusd adds four u8*s8 products into int32 lanes without saturation.
 *  - int32: a row dot is bounded by 3*128*K < 2^29.
 */
#define F(x) BN_NAME(x)
#ifndef BN_WIDE_REGS
#define BN_WIDE_REGS 0
#endif
#ifndef BN_ZMM
#define BN_ZMM 0
#endif

BN_FN int32_t F(hsum_i32)(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

BN_FN float F(hsum_f32)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

BN_FN __m256i F(load)(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* ---- keeping the 512-bit units powered through a decode step ----
 * The AVX-512 body runs one hot loop on 512-bit vectors, the attention; the matmuls around it are 256-bit. After
 * a millisecond of 256-bit code the core has powered its 512-bit units down, and the next 512-bit FMAs run slowly
 * for ~300 us while they come back: at depth 4000 each layer's decode attention took 28 us for its first span
 * per thread, falling to 13 us by the fifteenth (Ice Lake-SP, 2 threads; ~3 ms of a 70 ms step). A 256-bit loop
 * reproduces it in front of the kernel alone, a 512-bit one does not. So a single-token matmul (a decode step's)
 * issues one 512-bit FMA: it is memory-bound, so it loses nothing even where 512-bit code lowers the clock, and
 * the attention after it starts at full speed (decode at depth 4000 +4%). Prompt matmuls are compute-bound and
 * stay purely 256-bit; a prompt's attention is long enough for the ramp not to matter. A batch step of 2-4
 * sequences (matmuls of T > 1) is not covered: not measured. Measured on Ice Lake-SP only. */
BN_FN void F(wide_units_on)(void) {
#if BN_ZMM
    __m512 z = _mm512_set1_ps(1.0f);
    __asm__ volatile("" : "+v"(z));     /* opaque: the FMA must execute, not fold */
    z = _mm512_fmadd_ps(z, z, z);
    __asm__ volatile("" : "+v"(z));
#endif
}
/* What every matmul entry does first: its receipt mark, and for one token the 512-bit units kept on */
#define BN_MATMUL_ENTRY(id, T) (BN_MARK(BN_VARIANT, id), (T) == 1 ? F(wide_units_on)() : (void)0)

/* ---- ternary dot primitive: four planes of 32 codes against 128 contiguous activations ---- */
#if BN_VNNI
BN_FN __m256i F(dot4)(const __m256i *p, const int8_t *a) {
    /* a chain that starts from zero: blocks stay independent, only the caller's add is loop-carried */
    __m256i acc = _mm256_dpbusd_epi32(_mm256_setzero_si256(), p[0], F(load)(a));
    acc = _mm256_dpbusd_epi32(acc, p[1], F(load)(a + 32));
    acc = _mm256_dpbusd_epi32(acc, p[2], F(load)(a + 64));
    return _mm256_dpbusd_epi32(acc, p[3], F(load)(a + 96));
}
BN_FN __m256i F(acc_add)(__m256i acc, __m256i v) { return _mm256_add_epi32(acc, v); }
BN_FN __m256i F(widen)(__m256i acc) { return acc; }
#else
BN_FN __m256i F(dot4)(const __m256i *p, const int8_t *a) {
    const __m256i m0 = _mm256_maddubs_epi16(p[0], F(load)(a));
    const __m256i m1 = _mm256_maddubs_epi16(p[1], F(load)(a + 32));
    const __m256i m2 = _mm256_maddubs_epi16(p[2], F(load)(a + 64));
    const __m256i m3 = _mm256_maddubs_epi16(p[3], F(load)(a + 96));
    return _mm256_add_epi16(_mm256_add_epi16(m0, m1), _mm256_add_epi16(m2, m3));
}
BN_FN __m256i F(acc_add)(__m256i acc, __m256i v) { return _mm256_add_epi16(acc, v); }
BN_FN __m256i F(widen)(__m256i acc) { return _mm256_madd_epi16(acc, _mm256_set1_epi16(1)); }
#endif

/* ---- activation quantization (bit-identical to the scalar reference) ---- */

BN_API void F(quantize_act)(const float *x, int64_t n, int8_t *q, bn_qinfo *info) {
    BN_MARK(BN_VARIANT, BN_K_QUANTIZE_ACT);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    /* |x| first in vmaxps so that a NaN input is skipped, as in the scalar loop */
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), absmask), m0);
        m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 8), absmask), m1);
        m2 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 16), absmask), m2);
        m3 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i + 24), absmask), m3);
    }
    for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), absmask), m0);
    __m256 m = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    for (; i < n; i++) {
        const float a = x[i] < 0 ? -x[i] : x[i];
        if (a > amax) amax = a;
    }
    const float s = bn_act_scale(amax);

    const __m256 vs = _mm256_set1_ps(s), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-128.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i vsum = _mm256_setzero_si256();
    i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v[4];
        for (int j = 0; j < 4; j++) {
            __m256 f = _mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), vs);
            f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
            v[j] = _mm256_cvtps_epi32(f);
            vsum = _mm256_add_epi32(vsum, v[j]);
        }
        /* packs work per 128-bit lane; the permute restores element order */
        const __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(w, order));
    }
    int32_t sum = F(hsum_i32)(vsum);
    for (; i < n; i++) {
        float v = _mm_cvtss_f32(_mm_round_ss(_mm_setzero_ps(), _mm_set_ss(x[i] * s),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        if (v > 127.0f) v = 127.0f;
        if (v < -128.0f) v = -128.0f;
        q[i] = (int8_t)v;
        sum += q[i];
    }
    info->scale = s;
    info->sum = sum;
}

/* ---- I2_S ---- */

/* The four planes of one 32-byte block (plane l = bits 7-2l..6-2l, elements 32l..32l+31), with code 3 mapped
 * to 1 (value 0). Two nibble lookups per byte do the shift, mask and remap at once. */
BN_FN void F(i2s_planes)(const uint8_t *blk, __m256i *p) {
    const __m256i lut_hi = _mm256_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1,
                                            0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1);
    const __m256i lut_lo = _mm256_setr_epi8(0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1,
                                            0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1);
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    const __m256i c = F(load)(blk);
    const __m256i nh = _mm256_and_si256(_mm256_srli_epi16(c, 4), m0f), nl = _mm256_and_si256(c, m0f);
    p[0] = _mm256_shuffle_epi8(lut_hi, nh);
    p[1] = _mm256_shuffle_epi8(lut_lo, nh);
    p[2] = _mm256_shuffle_epi8(lut_hi, nl);
    p[3] = _mm256_shuffle_epi8(lut_lo, nl);
}

/* Dot of block elements [jlo, jhi) with src[0 .. jhi-jlo): a row that starts or ends inside a block. The other
 * elements of the block belong to the neighbouring rows; zero activations cancel them. */
BN_FN __m256i F(i2s_partial)(const __m256i *p, int64_t jlo, int64_t jhi, const int8_t *src) {
    int8_t tmp[BN_I2S_BLOCK] __attribute__((aligned(32)));
    BN_MEMSET(tmp, 0, sizeof(tmp));
    BN_MEMCPY(tmp + jlo, src, (size_t)(jhi - jlo));
    return F(widen)(F(dot4)(p, tmp));
}

/* Rows [r0, r1) for NT (1..4) tokens whose activations are q + t*K. Each block is decoded once per row and
 * used for all NT tokens. */
BN_FN void F(i2s_tile)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                       const bn_qinfo *qi, float wscale, float *y, int64_t ldy, const int NT) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t e0 = r * K;
        const uint8_t *blk = data + e0 / BN_I2S_BLOCK * BN_I2S_BLOCK_BYTES;
        const int64_t j0 = e0 % BN_I2S_BLOCK;
        __m256i acc32[4], acc[4], p[4];
        for (int t = 0; t < NT; t++) acc32[t] = _mm256_setzero_si256();
        int64_t k = 0;
        if (j0 != 0) { /* head: the row starts inside a block */
            const int64_t n = K < BN_I2S_BLOCK - j0 ? K : BN_I2S_BLOCK - j0;
            F(i2s_planes)(blk, p);
            for (int t = 0; t < NT; t++)
                acc32[t] = _mm256_add_epi32(acc32[t], F(i2s_partial)(p, j0, j0 + n, q + t * K));
            k = n;
            blk += BN_I2S_BLOCK_BYTES;
        }
        int64_t nfull = (K - k) / BN_I2S_BLOCK;
        while (nfull > 0) {
            const int64_t run = nfull < 16 ? nfull : 16; /* int16 accumulators hold 16 blocks */
            for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_si256();
            for (int64_t i = 0; i < run; i++) {
                F(i2s_planes)(blk, p);
                for (int t = 0; t < NT; t++) acc[t] = F(acc_add)(acc[t], F(dot4)(p, q + t * K + k));
                blk += BN_I2S_BLOCK_BYTES;
                k += BN_I2S_BLOCK;
            }
            for (int t = 0; t < NT; t++) acc32[t] = _mm256_add_epi32(acc32[t], F(widen)(acc[t]));
            nfull -= run;
        }
        if (k < K) { /* tail: the row ends inside a block */
            F(i2s_planes)(blk, p);
            for (int t = 0; t < NT; t++)
                acc32[t] = _mm256_add_epi32(acc32[t], F(i2s_partial)(p, 0, K - k, q + t * K + k));
        }
        for (int t = 0; t < NT; t++) y[t * ldy + r] = bn_i2s_finish(F(hsum_i32)(acc32[t]), qi + t, wscale);
    }
}

/* ---- I2_S fast path: rows on block boundaries (K % 128 == 0), RB rows x NT tokens per tile ----
 *
 * Planes are cut out of the raw bytes on the fly with a shift and a mask (one constant register, so the tile's
 * accumulators stay in registers), and each activation vector loaded feeds both rows of the tile. Code 3 is
 * never written by a converter, so the caller scans the row range once: only a range that holds one pays the
 * three-instruction remap per block (F(i2s_fix3)); every range gives the scalar reference's integers. */

/* Any code 3 in n bytes (n % 32 == 0)? A pair's two bits are both set. */
BN_FN int F(i2s_has_code3)(const uint8_t *p, int64_t n) {
    __m256i any = _mm256_setzero_si256();
    for (int64_t i = 0; i < n; i += 32) {
        const __m256i c = F(load)(p + i);
        any = _mm256_or_si256(any, _mm256_and_si256(c, _mm256_srli_epi16(c, 1)));
    }
    /* bit 2k of a byte: low bit of pair k and its high bit (the shift brings bit 8 only into bit 7) */
    return !_mm256_testz_si256(any, _mm256_set1_epi8(0x55));
}

/* Code 3 -> 1 in every pair: clear a pair's high bit where its low bit is set (3 -> 1, 1 -> 1; 0 and 2 keep). */
BN_FN __m256i F(i2s_fix3)(__m256i c) {
    return _mm256_andnot_si256(_mm256_and_si256(_mm256_slli_epi16(c, 1), _mm256_set1_epi8((char)0xaa)), c);
}

/* Plane l (elements 32l..32l+31 of the block): bits 7-2l..6-2l of each byte. The 16-bit shift carries bits of
 * the neighbouring byte into bits 2..7, which the mask drops. */
BN_FN __m256i F(i2s_plane)(__m256i c, const int l) {
    const __m256i m3 = _mm256_set1_epi8(3);
    return l == 3 ? _mm256_and_si256(c, m3) : _mm256_and_si256(_mm256_srli_epi16(c, 6 - 2 * l), m3);
}

#if BN_VNNI
BN_FN __m256i F(mac)(__m256i acc, __m256i p, __m256i a) { return _mm256_dpbusd_epi32(acc, p, a); }
#else
/* One plane into the int16 accumulator: 16 blocks x 4 planes of pairs in [-512, 508] stay >= -32768. The
 * empty asm keeps the sum a chain: GCC would otherwise reassociate the adds into trees whose partial products
 * outnumber the 16 registers and spill. */
BN_FN __m256i F(mac)(__m256i acc, __m256i p, __m256i a) {
    acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(p, a));
    __asm__("" : "+x"(acc));
    return acc;
}
#endif

/* Eight int32 vectors -> their eight horizontal sums, in order. */
BN_FN __m256i F(reduce8)(const __m256i *v) {
    const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

/* Rows r..r+RB-1 (RB 1..4) for tokens q + t*K (NT 1..4): y[t*ldy + r + i]. K % 128 == 0. */
BN_FN void F(i2s_fast_tile)(const uint8_t *data, int64_t K, int64_t r, const int8_t *q, const bn_qinfo *qi,
                            float wscale, float *y, int64_t ldy, const int RB, const int NT, const int FIX) {
    const int64_t nb = K / BN_I2S_BLOCK;
    const uint8_t *w = data + r * (K / 4);
    __m256i acc32[16]; /* lane i*NT + t */
    for (int j = 0; j < 16; j++) acc32[j] = _mm256_setzero_si256();
    for (int64_t b0 = 0; b0 < nb; b0 += 16) { /* int16 accumulators hold 16 blocks */
        const int64_t n = nb - b0 < 16 ? nb - b0 : 16;
        __m256i acc[4][4];
        for (int i = 0; i < RB; i++)
            for (int t = 0; t < NT; t++) acc[i][t] = _mm256_setzero_si256();
        for (int64_t b = b0; b < b0 + n; b++) {
            __m256i c[4];
            for (int i = 0; i < RB; i++) {
                c[i] = F(load)(w + i * (K / 4) + b * BN_I2S_BLOCK_BYTES);
                if (FIX) c[i] = F(i2s_fix3)(c[i]);
            }
            const int8_t *qb = q + b * BN_I2S_BLOCK;
            for (int l = 0; l < 4; l++) {
                __m256i p[4];
                for (int i = 0; i < RB; i++) p[i] = F(i2s_plane)(c[i], l);
                for (int t = 0; t < NT; t++) {
                    __m256i a = F(load)(qb + t * K + 32 * l);
                    /* one load feeds every row: GCC would otherwise fold it into each vpmaddubsw as a memory
                     * operand, and twice the loads cost Zen 3 a quarter of the tile's speed */
                    __asm__("" : "+x"(a));
                    for (int i = 0; i < RB; i++) acc[i][t] = F(mac)(acc[i][t], p[i], a);
                }
            }
        }
        for (int i = 0; i < RB; i++)
            for (int t = 0; t < NT; t++)
                acc32[i * NT + t] = _mm256_add_epi32(acc32[i * NT + t], F(widen)(acc[i][t]));
    }
    /* eight lanes at a time: the scalar finishing steps ((float)dot - (float)sum) / s * wscale, per lane */
    for (int j0 = 0; j0 < RB * NT; j0 += 8) {
        float sums[8], scales[8], out[8];
        for (int j = 0; j < 8; j++) {
            const int live = j0 + j < RB * NT;
            sums[j] = live ? (float)qi[(j0 + j) % NT].sum : 0.0f;
            scales[j] = live ? qi[(j0 + j) % NT].scale : 1.0f;
        }
        const __m256 dots = _mm256_cvtepi32_ps(F(reduce8)(acc32 + j0));
        const __m256 v = _mm256_div_ps(_mm256_sub_ps(dots, _mm256_loadu_ps(sums)), _mm256_loadu_ps(scales));
        _mm256_storeu_ps(out, _mm256_mul_ps(v, _mm256_set1_ps(wscale)));
        for (int j = j0; j < RB * NT && j < j0 + 8; j++) y[(j % NT) * ldy + r + j / NT] = out[j - j0];
    }
}

/* Rows [r0, r1) for NT tokens, RB rows per tile: enough independent accumulator chains to hide the latency of
 * the multiply-add (a one- or two-token tile of two rows has only 2-4) within the registers. */
BN_FN void F(i2s_fast_rows)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                            const bn_qinfo *qi, float wscale, float *y, int64_t ldy, const int NT, const int FIX) {
    const int RB = BN_WIDE_REGS ? 4 : 2;
    int64_t r = r0;
    for (; r + RB <= r1; r += RB) F(i2s_fast_tile)(data, K, r, q, qi, wscale, y, ldy, RB, NT, FIX);
    for (; r < r1; r++) F(i2s_fast_tile)(data, K, r, q, qi, wscale, y, ldy, 1, NT, FIX);
}

/* All tokens in groups of four; FIX is a constant wherever this is inlined. */
BN_FN void F(i2s_fast_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                            const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy, const int FIX) {
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) F(i2s_fast_rows)(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 4, FIX);
    const int8_t *qt = q + t * K;
    float *yt = y + t * ldy;
    switch (T - t) {
    case 3: F(i2s_fast_rows)(data, K, r0, r1, qt, qi + t, wscale, yt, ldy, 3, FIX); break;
    case 2: F(i2s_fast_rows)(data, K, r0, r1, qt, qi + t, wscale, yt, ldy, 2, FIX); break;
    case 1: F(i2s_fast_rows)(data, K, r0, r1, qt, qi + t, wscale, yt, ldy, 1, FIX); break;
    default: break;
    }
}

/* Four int32 vectors -> their four horizontal sums, in order. */
BN_FN __m128i F(reduce4)(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/* ---- I2_S gemv (one token), rows on block boundaries (K % 128 == 0) ----
 *
 * Decode reads each weight once, so the remap of code 3 stays inline: the pshufb planes of F(i2s_planes) do it
 * at no extra cost. RB rows share each block's four activation loads and one vector finish (a row alone pays
 * a horizontal sum and a division), and their RB independent accumulator chains run side by side. Prefetch
 * addresses past the matrix (last tiles) are harmless: prefetches never fault. */
BN_FN void F(i2s_gemv_tile)(const uint8_t *data, int64_t K, int64_t r, const int8_t *q, const bn_qinfo *qi,
                            float wscale, float *y, const int RB) {
    const int64_t nb = K / BN_I2S_BLOCK, rb = K / 4;
    const uint8_t *w = data + r * rb;
    __m256i acc32[4];
    for (int i = 0; i < 4; i++) acc32[i] = _mm256_setzero_si256();
    for (int64_t b0 = 0; b0 < nb; b0 += 16) { /* int16 accumulators hold 16 blocks */
        const int64_t n = nb - b0 < 16 ? nb - b0 : 16;
        __m256i acc[4];
        for (int i = 0; i < RB; i++) acc[i] = _mm256_setzero_si256();
        for (int64_t b = b0; b < b0 + n; b++) {
            const int8_t *qb = q + b * BN_I2S_BLOCK;
            /* the tile reads RB short strided streams, which the hardware prefetcher does not follow: fetch
             * the bytes two tiles ahead (RB * rb bytes per tile, 128 per block step), linearly */
            _mm_prefetch((const char *)(w + 2 * RB * rb + b * 128), _MM_HINT_T0);
            _mm_prefetch((const char *)(w + 2 * RB * rb + b * 128 + 64), _MM_HINT_T0);
            for (int i = 0; i < RB; i++) {
                __m256i p[4];
                F(i2s_planes)(w + i * rb + b * BN_I2S_BLOCK_BYTES, p);
                acc[i] = F(acc_add)(acc[i], F(dot4)(p, qb));
            }
        }
        for (int i = 0; i < RB; i++) acc32[i] = _mm256_add_epi32(acc32[i], F(widen)(acc[i]));
    }
    /* lane i: the scalar finishing steps ((float)dot - (float)sum) / s * wscale */
    const __m128 dots = _mm_cvtepi32_ps(F(reduce4)(acc32[0], acc32[1], acc32[2], acc32[3]));
    const __m128 v = _mm_div_ps(_mm_sub_ps(dots, _mm_set1_ps((float)qi->sum)), _mm_set1_ps(qi->scale));
    float out[4];
    _mm_storeu_ps(out, _mm_mul_ps(v, _mm_set1_ps(wscale)));
    for (int i = 0; i < RB; i++) y[r + i] = out[i];
}

BN_API void F(i2s_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, float wscale, float *y) {
    BN_MATMUL_ENTRY(BN_K_I2S_GEMV, 1);
    if (K % BN_I2S_BLOCK != 0) { /* rows start inside blocks */
        F(i2s_tile)(data, K, r0, r1, q, qi, wscale, y, 0, 1);
        return;
    }
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) F(i2s_gemv_tile)(data, K, r, q, qi, wscale, y, 4);
    switch (r1 - r) {
    case 3: F(i2s_gemv_tile)(data, K, r, q, qi, wscale, y, 3); break;
    case 2: F(i2s_gemv_tile)(data, K, r, q, qi, wscale, y, 2); break;
    case 1: F(i2s_gemv_tile)(data, K, r, q, qi, wscale, y, 1); break;
    default: break;
    }
}

BN_API void F(i2s_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1,
                        const int8_t *q, const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    BN_MATMUL_ENTRY(BN_K_I2S_GEMM, T);
    if (K % BN_I2S_BLOCK == 0) {
        if (r1 <= r0) return;
        if (F(i2s_has_code3)(data + r0 * (K / 4), (r1 - r0) * (K / 4)))
            F(i2s_fast_gemm)(data, K, r0, r1, q, qi, T, wscale, y, ldy, 1);
        else
            F(i2s_fast_gemm)(data, K, r0, r1, q, qi, T, wscale, y, ldy, 0);
        return;
    }
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) F(i2s_tile)(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 4);
    switch (T - t) {
    case 3: F(i2s_tile)(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 3); break;
    case 2: F(i2s_tile)(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 2); break;
    case 1: F(i2s_tile)(data, K, r0, r1, q + t * K, qi + t, wscale, y + t * ldy, ldy, 1); break;
    default: break;
    }
}

/* ---- TQ2_0 / TQ1_0 ---- */

/* TQ2_0 half-block h: byte 32h+m, bits 2l hold element 128h+32l+m (lowest bits first). Codes 0..3. */
BN_FN void F(tq2_planes)(const uint8_t *half, __m256i *p) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i c = F(load)(half);
    p[0] = _mm256_and_si256(c, m3);
    p[1] = _mm256_and_si256(_mm256_srli_epi16(c, 2), m3);
    p[2] = _mm256_and_si256(_mm256_srli_epi16(c, 4), m3);
    p[3] = _mm256_and_si256(_mm256_srli_epi16(c, 6), m3);
}

/* Base-3 digit of bytes already multiplied by 3^n (mod 256): ((x*3) >> 8) = (x > 85) + (x > 170), each
 * comparison as min(saturating x - c, 1). */
BN_FN __m256i F(tq1_digit256)(__m256i x) {
    const __m256i one = _mm256_set1_epi8(1);
    return _mm256_add_epi8(_mm256_min_epu8(_mm256_subs_epu8(x, _mm256_set1_epi8(85)), one),
                           _mm256_min_epu8(_mm256_subs_epu8(x, _mm256_set1_epi8((char)170)), one));
}
BN_FN __m128i F(tq1_digit128)(__m128i x) {
    const __m128i one = _mm_set1_epi8(1);
    return _mm_add_epi8(_mm_min_epu8(_mm_subs_epu8(x, _mm_set1_epi8(85)), one),
                        _mm_min_epu8(_mm_subs_epu8(x, _mm_set1_epi8((char)170)), one));
}
BN_FN __m256i F(times3_256)(__m256i x) { return _mm256_add_epi8(_mm256_add_epi8(x, x), x); }
BN_FN __m128i F(times3_128)(__m128i x) { return _mm_add_epi8(_mm_add_epi8(x, x), x); }

/* The eight 32-code planes of a TQ1_0 block (docs/formats.md §4), codes 0..2 in element order, built in registers
 * (storing 16- and 4-byte pieces and reloading them as 32 bytes would stall on store forwarding). */
BN_FN void F(tq1_planes)(const uint8_t *blk, __m256i *p) {
    __m256i x = F(load)(blk); /* qs[0..31]: digit n -> elements 32n + m */
    for (int n = 0; n < 5; n++) {
        p[n] = F(tq1_digit256)(x);
        x = F(times3_256)(x);
    }
    __m128i z = _mm_loadu_si128((const __m128i *)(blk + 32)); /* qs[32..47]: digit n -> 160 + 16n + m */
    __m128i d[5];
    for (int n = 0; n < 5; n++) {
        d[n] = F(tq1_digit128)(z);
        z = F(times3_128)(z);
    }
    int32_t qh;
    BN_MEMCPY(&qh, blk + 48, 4); /* qh[0..3]: digit n -> 240 + 4n + j, i.e. dword n holds qh * 3^n */
    const __m128i w0 = _mm_set1_epi32(qh), w1 = F(times3_128)(w0), w2 = F(times3_128)(w1);
    const __m128i w3 = F(times3_128)(w2);
    const __m128i w = _mm_blend_epi32(_mm_blend_epi32(w0, w1, 0x2), _mm_blend_epi32(w2, w3, 0x8), 0xc);
    p[5] = _mm256_inserti128_si256(_mm256_castsi128_si256(d[0]), d[1], 1);
    p[6] = _mm256_inserti128_si256(_mm256_castsi128_si256(d[2]), d[3], 1);
    p[7] = _mm256_inserti128_si256(_mm256_castsi128_si256(d[4]), F(tq1_digit128)(w), 1);
}

/* Activation sums of blocks b0 .. b0+n-1 (n <= BN_TQ_RUN) for NT (1..4) tokens: bsum[i][t], 0 for unused t. */
BN_FN void F(tq_run_sums)(const int8_t *q, int64_t K, int64_t b0, int64_t n, const int NT, int32_t (*bsum)[4]) {
    int32_t sums[BN_TQ_RUN];
    for (int t = 0; t < 4; t++) {
        if (t < NT) bn_block_sums(q + t * K + b0 * BN_TQ_BLOCK, n, sums);
        for (int64_t i = 0; i < n; i++) bsum[i][t] = t < NT ? sums[i] : 0;
    }
}

/* Rows [r0, r1) of a TQ matrix for NT (1..4) tokens, one token per lane of a 4-float accumulator. The row is
 * walked in runs of BN_TQ_RUN blocks: the activation sums of a run's blocks are computed once per call, and
 * the partial float sum of a row is parked in y between runs. Per block and token the float steps are those
 * of the scalar reference (int -> float, times d, plus the running sum: two roundings), so results are
 * bit-identical to it. */
BN_FN void F(tq_tile)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                      const bn_qinfo *qi, float *y, int64_t ldy, const int tq1, const int NT) {
    const int64_t nb = K / BN_TQ_BLOCK;
    const int64_t bbytes = tq1 ? BN_TQ1_BLOCK_BYTES : BN_TQ2_BLOCK_BYTES, row_bytes = nb * bbytes;
    const int64_t d_off = tq1 ? 52 : 64;
    int32_t bsum[BN_TQ_RUN][4] __attribute__((aligned(16))); /* [block][token], 0 for unused tokens */
    for (int64_t b0 = 0; b0 < nb; b0 += BN_TQ_RUN) {
        const int64_t n = nb - b0 < BN_TQ_RUN ? nb - b0 : BN_TQ_RUN;
        const int last = b0 + n == nb;
        F(tq_run_sums)(q, K, b0, n, NT, bsum);
        for (int64_t r = r0; r < r1; r++) {
            float lanes[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (b0)
                for (int t = 0; t < NT; t++) lanes[t] = y[t * ldy + r];
            __m128 acc = _mm_loadu_ps(lanes);
            const uint8_t *blk = data + r * row_bytes + b0 * bbytes;
            for (int64_t i = 0; i < n; i++, blk += bbytes) {
                /* rows of a few hundred bytes are too short for the hardware prefetcher to follow (as in the I2_S
                 * gemv): fetch two rows ahead, a block's worth per block (TQ2_0 gemv +11-34% on Zen 3) */
                _mm_prefetch((const char *)(blk + 2 * row_bytes), _MM_HINT_T0);
                _mm_prefetch((const char *)(blk + 2 * row_bytes + 64), _MM_HINT_T0);
                /* half by half for TQ2_0, so that only four planes are live next to the token sums */
                __m256i all[8], v[4];
                if (tq1) F(tq1_planes)(blk, all);
                for (int t = 0; t < 4; t++) v[t] = _mm256_setzero_si256();
                for (int h = 0; h < 2; h++) {
                    __m256i half[4];
                    if (tq1)
                        for (int l = 0; l < 4; l++) half[l] = all[4 * h + l];
                    else
                        F(tq2_planes)(blk + 32 * h, half);
                    for (int t = 0; t < NT; t++)
                        v[t] = F(acc_add)(v[t], F(dot4)(half, q + t * K + (b0 + i) * BN_TQ_BLOCK + 128 * h));
                }
                for (int t = 0; t < NT; t++) v[t] = F(widen)(v[t]);
                const __m128i dots = _mm_sub_epi32(F(reduce4)(v[0], v[1], v[2], v[3]),
                                                   _mm_load_si128((const __m128i *)bsum[i]));
                const __m128 d = _mm_cvtph_ps(_mm_set1_epi16((short)bn_load_u16(blk + d_off)));
                __m128 prod = _mm_mul_ps(_mm_cvtepi32_ps(dots), d);
                __asm__("" : "+x"(prod)); /* opaque: the add below must not fuse with the multiply (FMA) */
                acc = _mm_add_ps(acc, prod);
            }
            _mm_storeu_ps(lanes, acc);
            for (int t = 0; t < NT; t++) y[t * ldy + r] = last ? lanes[t] / qi[t].scale : lanes[t];
        }
    }
}

/* TQ2_0, RB (1..2) rows x NT (1..4) tokens per tile, the layout of the I2_S tile: planes cut with a shift and a
 * mask, each activation vector loaded once for both rows. Per block an int16 accumulator per (row, token) takes
 * the 8 planes (pairs within [-768, 762]: at most 6144); the eight block dots are reduced together (lane 4i+t)
 * and finished in float with the scalar reference's two roundings per block (the product is kept opaque so that
 * it is not fused into an FMA), so results are those of tq_tile and of the scalar loop, bit for bit. The row sums
 * run across calls in runs of BN_TQ_RUN blocks, parked in y, as in tq_tile. */
BN_FN void F(tq2_rows_tile)(const uint8_t *data, int64_t K, int64_t r, const int8_t *q, const int32_t (*bsum)[4],
                            int64_t b0, int64_t n, float *y, int64_t ldy, const bn_qinfo *qi, int last,
                            const int RB, const int NT) {
    const int64_t row_bytes = K / BN_TQ_BLOCK * BN_TQ2_BLOCK_BYTES;
    float lanes[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    if (b0)
        for (int i = 0; i < RB; i++)
            for (int t = 0; t < NT; t++) lanes[4 * i + t] = y[t * ldy + r + i];
    __m256 accf = _mm256_loadu_ps(lanes);
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t bi = 0; bi < n; bi++) {
        const int64_t b = b0 + bi;
        __m256i acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i c[2];
            for (int i = 0; i < RB; i++) c[i] = F(load)(data + (r + i) * row_bytes + b * BN_TQ2_BLOCK_BYTES + 32 * h);
            for (int l = 0; l < 4; l++) {
                __m256i p[2];
                for (int i = 0; i < RB; i++) p[i] = _mm256_and_si256(l ? _mm256_srli_epi16(c[i], 2 * l) : c[i], m3);
                for (int t = 0; t < NT; t++) {
                    __m256i a = F(load)(q + t * K + b * BN_TQ_BLOCK + 128 * h + 32 * l);
                    __asm__("" : "+x"(a)); /* one load for both rows (see i2s_fast_tile) */
                    for (int i = 0; i < RB; i++) acc[4 * i + t] = F(mac)(acc[4 * i + t], p[i], a);
                }
            }
        }
        for (int j = 0; j < 8; j++) acc[j] = F(widen)(acc[j]);
        const __m128i bs = _mm_load_si128((const __m128i *)bsum[bi]);
        const __m256i dots = _mm256_sub_epi32(F(reduce8)(acc), _mm256_set_m128i(bs, bs));
        const uint8_t *d0 = data + r * row_bytes + b * BN_TQ2_BLOCK_BYTES + 64;
        const __m128 dv0 = _mm_cvtph_ps(_mm_set1_epi16((short)bn_load_u16(d0)));
        const __m128 dv1 = RB > 1 ? _mm_cvtph_ps(_mm_set1_epi16((short)bn_load_u16(d0 + row_bytes))) : dv0;
        __m256 prod = _mm256_mul_ps(_mm256_cvtepi32_ps(dots), _mm256_set_m128(dv1, dv0));
        __asm__("" : "+x"(prod)); /* opaque: the add below must not fuse with the multiply (FMA) */
        accf = _mm256_add_ps(accf, prod);
    }
    _mm256_storeu_ps(lanes, accf);
    for (int i = 0; i < RB; i++)
        for (int t = 0; t < NT; t++)
            y[t * ldy + r + i] = last ? lanes[4 * i + t] / qi[t].scale : lanes[4 * i + t];
}

/* Rows [r0, r1) of a TQ2_0 matrix for NT (1..4) tokens, two rows at a time. */
BN_FN void F(tq2_tiles)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,
                        const bn_qinfo *qi, float *y, int64_t ldy, const int NT) {
    const int64_t nb = K / BN_TQ_BLOCK;
    int32_t bsum[BN_TQ_RUN][4] __attribute__((aligned(16))); /* [block][token], 0 for unused tokens */
    for (int64_t b0 = 0; b0 < nb; b0 += BN_TQ_RUN) {
        const int64_t n = nb - b0 < BN_TQ_RUN ? nb - b0 : BN_TQ_RUN;
        const int last = b0 + n == nb;
        F(tq_run_sums)(q, K, b0, n, NT, bsum);
        int64_t r = r0;
        for (; r + 2 <= r1; r += 2) F(tq2_rows_tile)(data, K, r, q, bsum, b0, n, y, ldy, qi, last, 2, NT);
        if (r < r1) F(tq2_rows_tile)(data, K, r, q, bsum, b0, n, y, ldy, qi, last, 1, NT);
    }
}

/* Multi-token TQ: TQ2_0 in two-row tiles; TQ1_0 (whose eight planes per block leave no registers for a second
 * row) and every gemv through tq_tile (one row, up to four tokens, one weight stream: the gemv is bound by memory,
 * and the two-row tile measured slower there). */
BN_FN void F(tq_rows)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q, const bn_qinfo *qi,
                      float *y, int64_t ldy, const int tq1, const int NT) {
    if (tq1)
        F(tq_tile)(data, K, r0, r1, q, qi, y, ldy, 1, NT);
    else
        F(tq2_tiles)(data, K, r0, r1, q, qi, y, ldy, NT);
}

#define BN_TQ_ENTRIES(name, ID_GEMV, ID_GEMM, IS_TQ1)                                                        \
    BN_API void F(name##_gemv)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,      \
                               const bn_qinfo *qi, float *y) {                                               \
        BN_MATMUL_ENTRY(ID_GEMV, 1);                                                                         \
        F(tq_tile)(data, K, r0, r1, q, qi, y, 0, IS_TQ1, 1);                                                 \
    }                                                                                                        \
    BN_API void F(name##_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *q,      \
                               const bn_qinfo *qi, int64_t T, float *y, int64_t ldy) {                       \
        BN_MATMUL_ENTRY(ID_GEMM, T);                                                                         \
        int64_t t = 0;                                                                                       \
        for (; t + 4 <= T; t += 4) F(tq_rows)(data, K, r0, r1, q + t * K, qi + t, y + t * ldy, ldy, IS_TQ1, 4); \
        switch (T - t) {                                                                                     \
        case 3: F(tq_rows)(data, K, r0, r1, q + t * K, qi + t, y + t * ldy, ldy, IS_TQ1, 3); break;          \
        case 2: F(tq_rows)(data, K, r0, r1, q + t * K, qi + t, y + t * ldy, ldy, IS_TQ1, 2); break;          \
        case 1: F(tq_rows)(data, K, r0, r1, q + t * K, qi + t, y + t * ldy, ldy, IS_TQ1, 1); break;          \
        default: break;                                                                                      \
        }                                                                                                    \
    }

BN_TQ_ENTRIES(tq2, BN_K_TQ2_GEMV, BN_K_TQ2_GEMM, 0)
BN_TQ_ENTRIES(tq1, BN_K_TQ1_GEMV, BN_K_TQ1_GEMM, 1)
#undef BN_TQ_ENTRIES

/* ---- float-weight matmuls (F16 / BF16 / F32): fp32 FMA, RB rows x NT tokens per tile ---- */

BN_FN __m256 F(load_w8)(const uint8_t *row, int64_t k, const int kind) {
    if (kind == BN_W_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * k)));
    if (kind == BN_W_BF16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * k))), 16));
    return _mm256_loadu_ps((const float *)(row + 4 * k));
}

BN_FN float F(load_w1)(const uint8_t *row, int64_t k, const int kind) {
    if (kind == BN_W_F16) return bn_half_to_float(bn_load_u16(row + 2 * k));
    if (kind == BN_W_BF16) return bn_bf16_to_float(bn_load_u16(row + 2 * k));
    return bn_load_f32(row + 4 * k);
}

/* Rows r..r+RB-1 for NT tokens: each weight vector is converted once and used for NT tokens; RB*NT
 * independent FMA chains hide the FMA latency. */
BN_FN void F(float_tile)(const uint8_t *data, int64_t K, int64_t r, const float *x, float *y, int64_t ldy,
                         const int kind, const int RB, const int NT) {
    const int64_t row_bytes = K * (kind == BN_W_F32 ? 4 : 2);
    const uint8_t *rows[8];
    __m256 acc[8][4];
    for (int i = 0; i < RB; i++) {
        rows[i] = data + (r + i) * row_bytes;
        for (int t = 0; t < NT; t++) acc[i][t] = _mm256_setzero_ps();
    }
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 w[8];
        for (int i = 0; i < RB; i++) w[i] = F(load_w8)(rows[i], k, kind);
        for (int t = 0; t < NT; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * K + k);
            /* one load for the RB rows (GCC would fold it into each FMA as a memory operand) */
            if (RB > 1) __asm__("" : "+x"(xv));
            for (int i = 0; i < RB; i++) acc[i][t] = _mm256_fmadd_ps(w[i], xv, acc[i][t]);
        }
    }
    for (int i = 0; i < RB; i++)
        for (int t = 0; t < NT; t++) {
            float s = F(hsum_f32)(acc[i][t]);
            for (int64_t kk = k; kk < K; kk++) s += F(load_w1)(rows[i], kk, kind) * x[t * K + kk];
            y[t * ldy + r + i] = s;
        }
}

/* The first four lines of rows r..r+n-1, so that their streams are under way when the next tile starts (see
 * below). */
BN_FN void F(float_prefetch_rows)(const uint8_t *data, int64_t row_bytes, int64_t r, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < 4; j++) _mm_prefetch((const char *)(data + (r + i) * row_bytes + 64 * j), _MM_HINT_T0);
}

/* One token: 8 rows at a time (8 FMA chains, 8 sequential weight streams). Each tile first touches the first
 * four lines of the next tile's rows: the hardware prefetcher needs a few misses on every new stream before it
 * runs ahead, and taking them early, overlapped with this tile, gained 2-10% of F16 GEMV bandwidth on Zen 3. */
BN_FN void F(float_rows_nt1)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, float *y,
                             const int kind) {
    const int64_t row_bytes = K * (kind == BN_W_F32 ? 4 : 2);
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) {
        F(float_prefetch_rows)(data, row_bytes, r + 8, r + 16 <= r1 ? 8 : 0);
        F(float_tile)(data, K, r, x, y, 0, kind, 8, 1);
    }
    for (; r < r1; r++) F(float_tile)(data, K, r, x, y, 0, kind, 1, 1);
}

/* Several tokens: RB rows x NT tokens per tile, RB chosen so the tile has enough independent FMA chains to
 * cover the FMA latency (2 pipes x 4 cycles: 8 or more chains) within the registers (16 ymm in AVX2, 32 with
 * AVX-512VL). The chains sum in the same order as the one-token path whatever RB is: results are identical. */
#define BN_FLOAT_ROWS(NT, RB)                                                                                \
    BN_FN void F(float_rows_nt##NT)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x,  \
                                    float *y, int64_t ldy, const int kind) {                                 \
        const int64_t row_bytes = K * (kind == BN_W_F32 ? 4 : 2);                                           \
        int64_t r = r0;                                                                                      \
        for (; r + (RB) <= r1; r += (RB)) {                                                                  \
            F(float_prefetch_rows)(data, row_bytes, r + (RB), r + 2 * (RB) <= r1 ? (RB) : 0);               \
            F(float_tile)(data, K, r, x, y, ldy, kind, (RB), NT);                                            \
        }                                                                                                    \
        for (; r < r1; r++) F(float_tile)(data, K, r, x, y, ldy, kind, 1, NT);                               \
    }
BN_FLOAT_ROWS(2, 4)
BN_FLOAT_ROWS(3, 3)
BN_FLOAT_ROWS(4, BN_WIDE_REGS ? 4 : 2)
#undef BN_FLOAT_ROWS

BN_FN void F(float_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                         float *y, int64_t ldy, const int kind) {
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) F(float_rows_nt4)(data, K, r0, r1, x + t * K, y + t * ldy, ldy, kind);
    switch (T - t) {
    case 3: F(float_rows_nt3)(data, K, r0, r1, x + t * K, y + t * ldy, ldy, kind); break;
    case 2: F(float_rows_nt2)(data, K, r0, r1, x + t * K, y + t * ldy, ldy, kind); break;
    case 1: F(float_rows_nt1)(data, K, r0, r1, x + t * K, y + t * ldy, kind); break;
    default: break;
    }
}

BN_API void F(f16_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                        float *y, int64_t ldy) {
    BN_MATMUL_ENTRY(T == 1 ? BN_K_F16_GEMV : BN_K_F16_GEMM, T);
    F(float_gemm)(data, K, r0, r1, x, T, y, ldy, BN_W_F16);
}

BN_API void F(bf16_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                         float *y, int64_t ldy) {
    BN_MATMUL_ENTRY(T == 1 ? BN_K_BF16_GEMV : BN_K_BF16_GEMM, T);
    F(float_gemm)(data, K, r0, r1, x, T, y, ldy, BN_W_BF16);
}

BN_API void F(f32_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                        float *y, int64_t ldy) {
    BN_MATMUL_ENTRY(T == 1 ? BN_K_F32_GEMV : BN_K_F32_GEMM, T);
    F(float_gemm)(data, K, r0, r1, x, T, y, ldy, BN_W_F32);
}

/* ---- Q8_0 ---- */

/* One row for NT tokens: a block's 32 int8 are converted to floats once, dotted with each token's 32
 * activations, and the block sum is scaled by d into the token's accumulator. */
BN_FN void F(q80_row)(const uint8_t *row, int64_t nb, const float *x, int64_t K, float *y, int64_t ldy,
                      const int NT) {
    __m256 acc[4];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * BN_Q80_BLOCK_BYTES;
        __m256 w[4];
        for (int j = 0; j < 4; j++)
            w[j] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * j))));
        const __m256 d = _mm256_set1_ps(bn_half_to_float(bn_load_u16(blk)));
        for (int t = 0; t < NT; t++) {
            const float *xb = x + t * K + b * BN_Q80_BLOCK;
            __m256 s = _mm256_mul_ps(w[0], _mm256_loadu_ps(xb));
            s = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xb + 8), s);
            s = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xb + 16), s);
            s = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xb + 24), s);
            acc[t] = _mm256_fmadd_ps(d, s, acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) y[t * ldy] = F(hsum_f32)(acc[t]);
}

BN_API void F(q80_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const float *x, int64_t T,
                        float *y, int64_t ldy) {
    BN_MATMUL_ENTRY(T == 1 ? BN_K_Q80_GEMV : BN_K_Q80_GEMM, T);
    const int64_t nb = K / BN_Q80_BLOCK, row_bytes = nb * BN_Q80_BLOCK_BYTES;
    int64_t t = 0;
    for (; t + 4 <= T; t += 4)
        for (int64_t r = r0; r < r1; r++) F(q80_row)(data + r * row_bytes, nb, x + t * K, K, y + t * ldy + r, ldy, 4);
    for (; t < T; t++)
        for (int64_t r = r0; r < r1; r++) F(q80_row)(data + r * row_bytes, nb, x + t * K, K, y + t * ldy + r, ldy, 1);
}

/* ---- Q8_0 x Q8 (int8 LM head): eight blocks per step, lane j = block g + j (the order of kernels.h) ---- */

/* The int32 dot of 32 int8 weights and 32 int8 activations, as eight partial sums: |w| times x with w's
 * sign (Q8_0 codes are within [-127, 127], so maddubs pairs stay below 2 * 127 * 127 and never saturate). */
BN_FN __m256i F(q8_dot)(__m256i uw, __m256i w, __m256i a) {
    const __m256i sa = _mm256_sign_epi8(a, w);
#if BN_VNNI
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), uw, sa);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(uw, sa), _mm256_set1_epi16(1));
#endif
}

/* One row for NT tokens (1..4): each group's eight weight blocks are loaded once for the NT tokens. */
BN_FN void F(q80_q8_row)(const uint8_t *row, int64_t nb, const int8_t *xq, const float *xd, int64_t K, float *y,
                         int64_t ldy, const int NT) {
    __m256 acc[4];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t g = 0; g < nb; g += 8) {
        const int n = nb - g < 8 ? (int)(nb - g) : 8;
        uint16_t dh[8];
        __m256i w[8], uw[8];
        for (int j = 0; j < 8; j++) {
            if (j < n) {
                const uint8_t *blk = row + (g + j) * BN_Q80_BLOCK_BYTES;
                dh[j] = bn_load_u16(blk);
                w[j] = F(load)(blk + 2);
                uw[j] = _mm256_abs_epi8(w[j]);
            } else {
                dh[j] = 0;
                w[j] = uw[j] = _mm256_setzero_si256();
            }
        }
        const __m256 dwv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dh));
        for (int t = 0; t < NT; t++) {
            const int8_t *a = xq + t * K + g * BN_Q80_BLOCK;
            __m256i dots[8];
            for (int j = 0; j < 8; j++)
                dots[j] = j < n ? F(q8_dot)(uw[j], w[j], F(load)(a + j * BN_Q80_BLOCK)) : _mm256_setzero_si256();
            float dx[8];
            const float *dxp = xd + t * nb + g;
            if (n < 8) {
                for (int j = 0; j < 8; j++) dx[j] = j < n ? dxp[j] : 0.0f;
                dxp = dx;
            }
            const __m256 s = _mm256_mul_ps(dwv, _mm256_loadu_ps(dxp));
            const __m256 next = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(F(reduce8)(dots)), acc[t]);
            if (n == 8) {
                acc[t] = next;
            } else { /* lanes without a block keep their value exactly (even a -0.0) */
                const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                acc[t] = _mm256_blendv_ps(acc[t], next,
                                          _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane)));
            }
        }
    }
    for (int t = 0; t < NT; t++) {
        float lanes[8];
        _mm256_storeu_ps(lanes, acc[t]);
        y[t * ldy] = bn_sum8_lanes(lanes);
    }
}

BN_API void F(q80_q8_gemm)(const uint8_t *data, int64_t K, int64_t r0, int64_t r1, const int8_t *xq,
                           const float *xd, int64_t T, float *y, int64_t ldy) {
    BN_MATMUL_ENTRY(T == 1 ? BN_K_Q80Q8_GEMV : BN_K_Q80Q8_GEMM, T);
    const int64_t nb = K / BN_Q80_BLOCK, row_bytes = nb * BN_Q80_BLOCK_BYTES;
    int64_t t = 0;
    for (; t + 4 <= T; t += 4)
        for (int64_t r = r0; r < r1; r++)
            F(q80_q8_row)(data + r * row_bytes, nb, xq + t * K, xd + t * nb, K, y + t * ldy + r, ldy, 4);
    for (; t < T; t++)
        for (int64_t r = r0; r < r1; r++)
            F(q80_q8_row)(data + r * row_bytes, nb, xq + t * K, xd + t * nb, K, y + t * ldy + r, ldy, 1);
}

/* ---- attention (f16 K/V) ---- */

/* Eight float vectors -> their eight horizontal sums, in order. */
BN_FN __m256 F(reduce8_ps)(const __m256 *v) {
    const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

/* e^x for x <= 0, eight lanes (the method and constants: BN_EXP_* in kernels_internal.h; truncation < 0.1 ulp).
 * Within 1 ulp of libm's expf, a dozen instructions instead of a call each. */
BN_FN __m256 F(exp_neg8)(__m256 x) {
    const __m256 lo = _mm256_set1_ps(BN_EXP_LO);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(BN_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(BN_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(BN_EXP_LN2_LO), r);
    static const float c[8] = BN_EXP_TAYLOR;
    __m256 p = _mm256_set1_ps(c[0]);
    for (int i = 1; i < 8; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c[i]));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* bn_softmax_ml (ops.c) with the exponentials eight at a time (the last partial eight through a padded copy); the
 * sum stays in double, as the reference's. */
BN_FN void F(softmax)(float *x, int64_t n, float *ml) {
    if (ml) ml[0] = -__builtin_inff(), ml[1] = 0.0f;
    const int64_t n8 = n & ~(int64_t)7;
    float tail[8];
    for (int j = 0; j < 8; j++) tail[j] = n8 + j < n ? x[n8 + j] : -__builtin_inff();
    __m256 vmax = _mm256_loadu_ps(tail);
    for (int64_t i = 0; i < n8; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float mx = lanes[0];
    for (int j = 1; j < 8; j++) mx = lanes[j] > mx ? lanes[j] : mx;
    if (mx == -__builtin_inff()) {   /* nothing attended: zeros, as bn_softmax */
        for (int64_t i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    const __m256 vm = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (int64_t i = 0; i <= n8; i += 8) {
        float *p = i < n8 ? x + i : tail;    /* padding lanes give e^-inf = 0 */
        const __m256 e = F(exp_neg8)(_mm256_sub_ps(_mm256_loadu_ps(p), vm));
        _mm256_storeu_ps(p, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double part[4];
    _mm256_storeu_pd(part, _mm256_add_pd(s0, s1));
    const double total = (part[0] + part[1]) + (part[2] + part[3]);
    const float inv = (float)(1.0 / total);
    const __m256 vinv = _mm256_set1_ps(inv);
    for (int64_t i = 0; i < n8; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
    for (int64_t i = n8; i < n; i++) x[i] = tail[i - n8] * inv;
    if (ml) ml[0] = mx, ml[1] = (float)total;
}

/* Elements [d, d + 8) of a K/V row (d % 8 == 0) as floats: f16, or Q8_0 blocks (d * q, exactly the reference's
 * float product). And one element, for head_dim % 8 != 0 (f16 only: a Q8_0 cache has head_dim % 32 == 0). */
BN_FN __m256 F(kv8)(const uint8_t *row, int64_t d, const int Q8) {
    if (!Q8) return F(load_w8)(row, d, BN_W_F16);
    const uint8_t *blk = row + (d >> 5) * BN_Q80_BLOCK_BYTES;
    const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + (d & 31)))));
    return _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(bn_load_u16(blk))), q);      /* F16C: exact, one instruction */
}

/* The caller's next span (kernels.h: `ahead`) is fetched into L2 during the weighted sum, whose V rows the K pass
 * already brought in: without it a core's memory reads stop for the weighted sum and the softmax, and restart cold
 * at the next span. Each position of each pass over V asks for `step` bytes (whole lines) of it: F(ahead_step)
 * spreads ahead_bytes evenly over `slots` = passes x positions; pass i's share starts at offset i * n_kv * step. */
BN_FN int64_t F(ahead_step)(int64_t ahead_bytes, int64_t slots) {
    return slots > 0 ? (ahead_bytes + 64 * slots - 1) / (64 * slots) * 64 : 0;   /* head_dim < 8: no vector pass */
}
BN_FN void F(fetch_ahead)(const uint8_t *ahead, int64_t ahead_bytes, int64_t off, int64_t step) {
    if (!ahead) return;
    const int64_t stop = off + step < ahead_bytes ? off + step : ahead_bytes;
    for (; off < stop; off += 64) _mm_prefetch((const char *)(ahead + off), _MM_HINT_T1);
}

/* Dims [d, d + W) of the weighted sum of V for NQ heads: W/8 accumulators per head (at most eight in all), each
 * one chain over the positions; the caller's next span fetched on the way from offset `from` (F(fetch_ahead)). */
BN_FN void F(att_v_pass)(const uint8_t *v, int64_t row_bytes, int64_t n_kv, int64_t head_dim, const float *scores,
                         float *out, int64_t d, const int NQ, const int W, const int Q8, const uint8_t *ahead,
                         int64_t ahead_bytes, int64_t from, int64_t step) {
    __m256 o[8];
    for (int j = 0; j < NQ * W / 8; j++) o[j] = _mm256_setzero_ps();
    for (int64_t p = 0; p < n_kv; p++) {
        F(fetch_ahead)(ahead, ahead_bytes, from + p * step, step);
        for (int j = 0; j < W / 8; j++) {
            const __m256 vj = F(kv8)(v + p * row_bytes, d + 8 * j, Q8);
            for (int h = 0; h < NQ; h++) {
                const __m256 w = _mm256_broadcast_ss(scores + h * n_kv + p);
                o[h * (W / 8) + j] = _mm256_fmadd_ps(w, vj, o[h * (W / 8) + j]);
            }
        }
    }
    for (int h = 0; h < NQ; h++)
        for (int j = 0; j < W / 8; j++) _mm256_storeu_ps(out + h * head_dim + d + 8 * j, o[h * (W / 8) + j]);
}

/* NQ (1, 2 or 4) query heads sharing one K/V head (GQA): softmax(q_h.k_i * scale) weighted sum of v_i. Each K and V
 * vector is converted once for the NQ heads (the conversion, not the FMA, bounds this loop on Zen 3), and both
 * passes are written for the FMA latency: the scores go 8/NQ positions at a time (eight independent dot chains,
 * one horizontal-sum tree), the weighted sum keeps eight 8-dim accumulators (64/NQ dims per head) per pass over
 * V, so that no chain waits on the previous position's FMA. Every output is the same float sequence for any NQ.
 * Rows are row_bytes apart: f16 (Q8 = 0) or Q8_0 blocks (Q8 = 1). */
BN_FN void F(attention_heads)(const float *q, const uint8_t *k, const uint8_t *v, int64_t row_bytes, int64_t n_kv,
                              int64_t head_dim, float scale, float *scores, float *out, float *ml, const int NQ,
                              const int Q8, const int prefetch_v, const uint8_t *ahead, int64_t ahead_bytes) {
    const int P = 8 / NQ, D = 64 / NQ;
    const int64_t hd8 = head_dim & ~(int64_t)7;
    /* the last block repeats the last row for positions past n_kv (and drops them): every score goes through
     * the same reduction tree */
    for (int64_t i = 0; i < n_kv; i += P) {
        const uint8_t *kr[8];
        for (int j = 0; j < P; j++) kr[j] = k + (i + j < n_kv ? i + j : n_kv - 1) * row_bytes;
        /* V's rows into L2 while the scores go over K: a decode span comes from memory, the hardware prefetcher
         * streams K, and this overlaps V's fetch with the K pass (+8% decode at 4000 positions, 2B shape, 2
         * threads). Only the first heads of a call ask: later ones find V in L2. */
        for (int j = 0; prefetch_v && j < P && i + j < n_kv; j++)
            for (int64_t c = 0; c < row_bytes; c += 64)
                _mm_prefetch((const char *)(v + (i + j) * row_bytes + c), _MM_HINT_T1);
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
        for (int64_t d = 0; d < hd8; d += 8)
            for (int j = 0; j < P; j++) {
                const __m256 kj = F(kv8)(kr[j], d, Q8);
                for (int h = 0; h < NQ; h++)
                    acc[h * P + j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * head_dim + d), kj, acc[h * P + j]);
            }
        float dots[8];
        _mm256_storeu_ps(dots, F(reduce8_ps)(acc));
        for (int h = 0; h < NQ; h++)
            for (int j = 0; j < P && i + j < n_kv; j++) {
                float s = dots[h * P + j];
                for (int64_t d = hd8; d < head_dim; d++) s += q[h * head_dim + d] * F(load_w1)(kr[j], d, BN_W_F16);
                scores[h * n_kv + i + j] = s * scale;
            }
    }
    for (int h = 0; h < NQ; h++) F(softmax)(scores + h * n_kv, n_kv, ml ? ml + 2 * h : NULL);
    const int64_t step = ahead ? F(ahead_step)(ahead_bytes, (head_dim / D + head_dim % D / 8) * n_kv) : 0;
    int64_t d = 0, pass = 0;
    for (; d + D <= head_dim; d += D, pass++)
        F(att_v_pass)(v, row_bytes, n_kv, head_dim, scores, out, d, NQ, D, Q8, ahead, ahead_bytes, pass * n_kv * step,
                      step);
    for (; d + 8 <= head_dim; d += 8, pass++)
        F(att_v_pass)(v, row_bytes, n_kv, head_dim, scores, out, d, NQ, 8, Q8, ahead, ahead_bytes, pass * n_kv * step,
                      step);
    for (; d < head_dim; d++)
        for (int h = 0; h < NQ; h++) {
            float o = 0.0f;
            for (int64_t p = 0; p < n_kv; p++) o += scores[h * n_kv + p] * F(load_w1)(v + p * row_bytes, d, BN_W_F16);
            out[h * head_dim + d] = o;
        }
}

#if BN_ZMM
/* The f16 attention on 512-bit vectors (the AVX-512 variant): the same float operations in the same order as
 * attention_heads, so the same bits as the 256-bit body, with half the instructions, and every K element
 * converted once for the whole GQA group instead of once per pair of heads: a 4000-token prompt of the 2B shape
 * prefills x1.18 (its attention is compute), decode at that depth did not move (the fetch of each span bounds it).
 *  - Scores: a vector holds dims [d, d + 8) of two positions (lanes 0-7 position j, 8-15 position j + 1), so each
 *    lane's chain over head_dim is the 256-bit one, and the two halves go through the same reduce8_ps tree.
 *  - The weighted sum of V gives each output dim its own chain over the positions whatever the vector width:
 *    16 dims a vector, 64 dims of up to four heads a pass (32 of eight).
 *  - Eight heads (two prompt tokens' GQA groups) go over K and V together, each element converted once for both
 *    tokens; their scores take four positions a block instead of eight, so that the 16 accumulators and 8 query
 *    vectors fit the 32 registers.
 * K rows are fetched 16 rows (a 4 KiB page) ahead by software, V rows during the K pass as attention_heads does:
 * 150 cold heads of 4000 positions, one thread, 43-44 ms with the K prefetch against 47-54 ms without. Only the
 * first heads of a call prefetch: the later ones (a prompt's tokens sharing a span) find it in L2, where the
 * prefetch instructions cost a tenth of the kernel's time. */
enum { BN_ZMM_KAHEAD = 16 };

/* The exponentials of F(exp_neg8), sixteen lanes at a time: the same operations lane by lane. */
BN_FN __m512 F(exp_neg16)(__m512 x) {
    const __m512 lo = _mm512_set1_ps(BN_EXP_LO);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(BN_EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(BN_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(BN_EXP_LN2_LO), r);
    static const float c[8] = BN_EXP_TAYLOR;
    __m512 p = _mm512_set1_ps(c[0]);
    for (int i = 1; i < 8; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c[i]));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps((__mmask16)~under, p, _mm512_castsi512_ps(e));
}

/* F(softmax) sixteen exponentials at a time, with the same bits: the exponentials lane by lane, and the sum of
 * each group of eight added into the same two four-double chains in the same order (one eight-double vector
 * holds both), the padded last group included. */
BN_FN void F(softmax_zmm)(float *x, int64_t n, float *ml) {
    if (ml) ml[0] = -__builtin_inff(), ml[1] = 0.0f;
    const int64_t n8 = n & ~(int64_t)7, n16 = n & ~(int64_t)15;
    float tail[8];
    for (int j = 0; j < 8; j++) tail[j] = n8 + j < n ? x[n8 + j] : -__builtin_inff();
    __m512 vmax = _mm512_castps256_ps512(_mm256_loadu_ps(tail));
    vmax = _mm512_insertf32x8(vmax, _mm256_loadu_ps(tail), 1);
    int64_t i = 0;
    for (; i < n16; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    if (i < n8) vmax = _mm512_max_ps(vmax, _mm512_insertf32x8(vmax, _mm256_loadu_ps(x + i), 0));
    const float mx = _mm512_reduce_max_ps(vmax);
    if (mx == -__builtin_inff()) {   /* nothing attended: zeros, as bn_softmax */
        for (int64_t j = 0; j < n; j++) x[j] = 0.0f;
        return;
    }
    const __m512 vm = _mm512_set1_ps(mx);
    __m512d sum = _mm512_setzero_pd();   /* lanes 0-3: the first four of every eight, 4-7: the last four */
    for (i = 0; i < n16; i += 16) {
        const __m512 e = F(exp_neg16)(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        sum = _mm512_add_pd(sum, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        sum = _mm512_add_pd(sum, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    for (; i <= n8; i += 8) {
        float *p = i < n8 ? x + i : tail;    /* padding lanes give e^-inf = 0 */
        const __m256 e = _mm512_castps512_ps256(
            F(exp_neg16)(_mm512_castps256_ps512(_mm256_sub_ps(_mm256_loadu_ps(p), _mm512_castps512_ps256(vm)))));
        _mm256_storeu_ps(p, e);
        sum = _mm512_add_pd(sum, _mm512_cvtps_pd(e));
    }
    double part[4];
    _mm256_storeu_pd(part, _mm256_add_pd(_mm512_castpd512_pd256(sum), _mm512_extractf64x4_pd(sum, 1)));
    const double total = (part[0] + part[1]) + (part[2] + part[3]);
    const float inv = (float)(1.0 / total);
    const __m512 vinv = _mm512_set1_ps(inv);
    for (i = 0; i < n16; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
    for (; i < n8; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm512_castps512_ps256(vinv)));
    for (i = n8; i < n; i++) x[i] = tail[i - n8] * inv;
    if (ml) ml[0] = mx, ml[1] = (float)total;
}

/* One level of reduce8_ps's tree on two vectors: within each 128-bit lane, [x0+x1, x2+x3, y0+y1, y2+y3] (the adds
 * of _mm256_hadd_ps), and across lanes, lane pairs (0+1, 2+3) of x, then of y. */
BN_FN __m512 F(hadd_lanes)(__m512 x, __m512 y) {
    return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x88), _mm512_shuffle_ps(x, y, 0xdd));
}
BN_FN __m512 F(hadd_quarters)(__m512 x, __m512 y) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xdd));
}

/* The scores of eight positions for four heads from their sixteen accumulators (acc[h * 4 + m]: lanes 0-7 the dims
 * of position 2m, lanes 8-15 of position 2m + 1, each lane its own chain over head_dim), each through reduce8_ps's
 * tree — adjacent lanes, adjacent pairs, then the first four plus the last four — with every level's adds made
 * on four heads at once; then times scale, laid out head by head: rows[h] holds positions 0-7 of head h in lanes
 * 8(h % 2) to 8(h % 2) + 7 of rows[h / 2]. */
BN_FN void F(zmm_scores8)(const __m512 *acc, float scale, __m512 *rows) {
    __m512 pairs[8], quads[4], sums[2];
    for (int m = 0; m < 4; m++)          /* per 128-bit lane: h lanes (0+1, 2+3), h' lanes (0+1, 2+3) */
        for (int g = 0; g < 2; g++) pairs[2 * m + g] = F(hadd_lanes)(acc[2 * g * 4 + m], acc[(2 * g + 1) * 4 + m]);
    for (int m = 0; m < 4; m++)          /* per 128-bit lane: the four-lane sums of heads 0, 1, 2, 3 */
        quads[m] = F(hadd_lanes)(pairs[2 * m], pairs[2 * m + 1]);
    for (int g = 0; g < 2; g++)          /* 128-bit lane j: position 4g + j's scores of heads 0-3 */
        sums[g] = F(hadd_quarters)(quads[2 * g], quads[2 * g + 1]);
    /* lane 8h + p (h = 0, 1) of rows[0] is position p, head h: lane 4p + h of sums[0] (p < 4), 16 + 4(p - 4) + h */
    const __m512i heads01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    const __m512i heads23 = _mm512_add_epi32(heads01, _mm512_set1_epi32(2));
    const __m512 vs = _mm512_set1_ps(scale);
    rows[0] = _mm512_mul_ps(_mm512_permutex2var_ps(sums[0], heads01, sums[1]), vs);
    rows[1] = _mm512_mul_ps(_mm512_permutex2var_ps(sums[0], heads23, sums[1]), vs);
}

/* The scores of four positions for eight heads from their sixteen accumulators (acc[h * 2 + m]: lanes 0-7
 * position 2m, lanes 8-15 position 2m + 1), through zmm_scores8's tree; rows[g] holds heads 4g to 4g + 3, head
 * 4g + j's four positions in its 128-bit lane j. */
BN_FN void F(zmm_scores4x8)(const __m512 *acc, float scale, __m512 *rows) {
    __m512 pairs[8], quads[4];
    for (int m = 0; m < 2; m++)
        for (int g = 0; g < 4; g++) pairs[4 * m + g] = F(hadd_lanes)(acc[2 * g * 2 + m], acc[(2 * g + 1) * 2 + m]);
    for (int m = 0; m < 2; m++)
        for (int g = 0; g < 2; g++) quads[2 * m + g] = F(hadd_lanes)(pairs[4 * m + 2 * g], pairs[4 * m + 2 * g + 1]);
    /* lane 4p + h of a sum: position p, head 4g + h; lane 4h + p of a row */
    const __m512i by_head = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512 vs = _mm512_set1_ps(scale);
    for (int g = 0; g < 2; g++)
        rows[g] = _mm512_mul_ps(_mm512_permutexvar_ps(by_head, F(hadd_quarters)(quads[g], quads[2 + g])), vs);
}

BN_FN void F(att_zmm_v_pass)(const uint8_t *v, int64_t row_bytes, int64_t n_kv, int64_t head_dim, const float *scores,
                             float *out, int64_t d, const int NQ, const int W, const uint8_t *ahead,
                             int64_t ahead_bytes, int64_t from, int64_t step) {
    __m512 o[16];
    for (int j = 0; j < NQ * W; j++) o[j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < n_kv; p++) {
        F(fetch_ahead)(ahead, ahead_bytes, from + p * step, step);
        const uint8_t *row = v + p * row_bytes + 2 * d;
        __m512 vj[4];
        for (int j = 0; j < W; j++) vj[j] = _mm512_cvtph_ps(F(load)(row + 32 * j));
        for (int h = 0; h < NQ; h++) {
            const __m512 w = _mm512_set1_ps(scores[h * n_kv + p]);
            for (int j = 0; j < W; j++) o[h * W + j] = _mm512_fmadd_ps(w, vj[j], o[h * W + j]);
        }
    }
    for (int h = 0; h < NQ; h++)
        for (int j = 0; j < W; j++) _mm512_storeu_ps(out + h * head_dim + d + 16 * j, o[h * W + j]);
}

/* NQ (1, 2, 4 or 8) query heads over one K/V head: P positions a score block, eight for up to four heads and four
 * for eight (16 accumulators either way); the weighted sum 16W dims a pass (NQ * W <= 16 accumulators). */
BN_FN void F(attention_zmm)(const float *q, const uint8_t *k, const uint8_t *v, int64_t row_bytes, int64_t n_kv,
                            int64_t head_dim, float scale, float *scores, float *out, float *ml, const int NQ,
                            const int prefetch, const uint8_t *ahead, int64_t ahead_bytes) {
    const int P = NQ > 4 ? 4 : 8, M = P / 2, W = NQ > 4 ? 2 : 4;
    for (int64_t i = 0; i < n_kv; i += P) {
        const uint8_t *kr[8];
        for (int j = 0; j < P; j++) kr[j] = k + (i + j < n_kv ? i + j : n_kv - 1) * row_bytes;
        for (int j = 0; prefetch && j < P && i + j < n_kv; j++)
            for (int64_t c = 0; c < 2 * head_dim; c += 64) {
                _mm_prefetch((const char *)(v + (i + j) * row_bytes + c), _MM_HINT_T1);
                if (i + j + BN_ZMM_KAHEAD < n_kv)
                    _mm_prefetch((const char *)(k + (i + j + BN_ZMM_KAHEAD) * row_bytes + c), _MM_HINT_T0);
            }
        __m512 acc[16];
        for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();   /* heads past NQ stay 0 */
        for (int64_t d = 0; d < head_dim; d += 8) {
            __m512 qd[8];
            for (int h = 0; h < NQ; h++) qd[h] = _mm512_broadcast_f32x8(_mm256_loadu_ps(q + h * head_dim + d));
            for (int m = 0; m < M; m++) {
                const __m256i two = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(kr[2 * m] + 2 * d))),
                    _mm_loadu_si128((const __m128i *)(kr[2 * m + 1] + 2 * d)), 1);
                const __m512 kp = _mm512_cvtph_ps(two);
                for (int h = 0; h < NQ; h++) acc[h * M + m] = _mm512_fmadd_ps(qd[h], kp, acc[h * M + m]);
            }
        }
        const __mmask8 live = (__mmask8)((1u << (n_kv - i < P ? n_kv - i : P)) - 1);
        __m512 rows[2];
        if (NQ > 4) {
            F(zmm_scores4x8)(acc, scale, rows);
            for (int g = 0; g < 2; g++) {
                float *at = scores + 4 * g * n_kv + i;
                _mm_mask_storeu_ps(at, live, _mm512_castps512_ps128(rows[g]));
                _mm_mask_storeu_ps(at + n_kv, live, _mm512_extractf32x4_ps(rows[g], 1));
                _mm_mask_storeu_ps(at + 2 * n_kv, live, _mm512_extractf32x4_ps(rows[g], 2));
                _mm_mask_storeu_ps(at + 3 * n_kv, live, _mm512_extractf32x4_ps(rows[g], 3));
            }
        } else {
            F(zmm_scores8)(acc, scale, rows);
            for (int h = 0; h < NQ; h++)
                _mm256_mask_storeu_ps(scores + h * n_kv + i, live, h % 2 ? _mm512_extractf32x8_ps(rows[h / 2], 1)
                                                                         : _mm512_castps512_ps256(rows[h / 2]));
        }
    }
    for (int h = 0; h < NQ; h++) F(softmax_zmm)(scores + h * n_kv, n_kv, ml ? ml + 2 * h : NULL);
    const int64_t passes = head_dim / (16 * W) + head_dim % (16 * W) / 16;
    const int64_t step = ahead ? F(ahead_step)(ahead_bytes, passes * n_kv) : 0;
    int64_t d = 0, pass = 0;
    for (; d + 16 * W <= head_dim; d += 16 * W, pass++)
        F(att_zmm_v_pass)(v, row_bytes, n_kv, head_dim, scores, out, d, NQ, W, ahead, ahead_bytes, pass * n_kv * step,
                          step);
    for (; d < head_dim; d += 16, pass++)
        F(att_zmm_v_pass)(v, row_bytes, n_kv, head_dim, scores, out, d, NQ, 1, ahead, ahead_bytes, pass * n_kv * step,
                          step);
}
#endif

BN_FN void F(attention_any)(const float *q, int64_t n_q, const uint8_t *k, const uint8_t *v, int64_t row_bytes,
                            int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                            const uint8_t *ahead, int64_t ahead_bytes, const int Q8) {
    int64_t h = 0;
    /* A Q8_0 row costs more to convert (widen, convert, scale): with 32 registers four heads share each
     * conversion, x1.25 over pairs (a 256-position span, head_dim 128, Sapphire Rapids); f16 rows measured
     * 7% slower in fours than in pairs. Same bits either way. */
    for (; BN_WIDE_REGS && Q8 && h + 4 <= n_q; h += 4)
        F(attention_heads)(q + h * head_dim, k, v, row_bytes, n_kv, head_dim, scale, scores, out + h * head_dim,
                           ml ? ml + 2 * h : NULL, 4, Q8, h == 0, h ? NULL : ahead, ahead_bytes);
    for (; h + 2 <= n_q; h += 2)
        F(attention_heads)(q + h * head_dim, k, v, row_bytes, n_kv, head_dim, scale, scores, out + h * head_dim,
                           ml ? ml + 2 * h : NULL, 2, Q8, h == 0, h ? NULL : ahead, ahead_bytes);
    if (h < n_q)
        F(attention_heads)(q + h * head_dim, k, v, row_bytes, n_kv, head_dim, scale, scores, out + h * head_dim,
                           ml ? ml + 2 * h : NULL, 1, Q8, h == 0, h ? NULL : ahead, ahead_bytes);
}

BN_API void F(attention)(const float *q, int64_t n_q, const bn_f16 *k, const bn_f16 *v, int64_t kv_stride,
                         int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                         const void *ahead_rows, int64_t ahead_bytes) {
    const uint8_t *ahead = (const uint8_t *)ahead_rows;
    BN_MARK(BN_VARIANT, BN_K_ATTENTION);
#if BN_ZMM
    if (head_dim % 16 == 0) {
        int64_t h = 0;
        for (; h + 8 <= n_q; h += 8)
            F(attention_zmm)(q + h * head_dim, (const uint8_t *)k, (const uint8_t *)v, 2 * kv_stride, n_kv, head_dim,
                             scale, scores, out + h * head_dim, ml ? ml + 2 * h : NULL, 8, h == 0, h ? NULL : ahead,
                             ahead_bytes);
        for (; h + 4 <= n_q; h += 4)
            F(attention_zmm)(q + h * head_dim, (const uint8_t *)k, (const uint8_t *)v, 2 * kv_stride, n_kv, head_dim,
                             scale, scores, out + h * head_dim, ml ? ml + 2 * h : NULL, 4, h == 0, h ? NULL : ahead,
                             ahead_bytes);
        for (; h + 2 <= n_q; h += 2)
            F(attention_zmm)(q + h * head_dim, (const uint8_t *)k, (const uint8_t *)v, 2 * kv_stride, n_kv, head_dim,
                             scale, scores, out + h * head_dim, ml ? ml + 2 * h : NULL, 2, h == 0, h ? NULL : ahead,
                             ahead_bytes);
        if (h < n_q)
            F(attention_zmm)(q + h * head_dim, (const uint8_t *)k, (const uint8_t *)v, 2 * kv_stride, n_kv, head_dim,
                             scale, scores, out + h * head_dim, ml ? ml + 2 * h : NULL, 1, h == 0, h ? NULL : ahead,
                             ahead_bytes);
        return;
    }
#endif
    F(attention_any)(q, n_q, (const uint8_t *)k, (const uint8_t *)v, 2 * kv_stride, n_kv, head_dim, scale, scores,
                     out, ml, ahead, ahead_bytes, 0);
}

BN_API void F(attention_q8)(const float *q, int64_t n_q, const uint8_t *k, const uint8_t *v, int64_t row_bytes,
                            int64_t n_kv, int64_t head_dim, float scale, float *scores, float *out, float *ml,
                            const void *ahead, int64_t ahead_bytes) {
    BN_MARK(BN_VARIANT, BN_K_ATTENTION_Q8);
    F(attention_any)(q, n_q, k, v, row_bytes, n_kv, head_dim, scale, scores, out, ml, (const uint8_t *)ahead,
                     ahead_bytes, 1);
}

/* ---- I2_S in the LUT form (layout and integer bounds in kernels.h) ----
 *
 * One tile of 32 rows at a time: each step loads 32 packed bytes (one per row), and its two nibbles index the
 * tables of two input pairs with pshufb (a table's 16 entries broadcast to both 128-bit lanes). High and low
 * parts of the looked-up sums add up in int8 lanes for four steps (eight lookups), then widen into int16
 * (15 batches stay below 2^15), then into int32. */
#define BN_LUT_BATCH 4      /* steps per int8 batch */
#define BN_LUT_RUN 60       /* steps per int16 run: 15 batches */

BN_FN __m256i F(lut_entries)(const int8_t *p) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
}

/* dots[32 i + r] = exact sum(c*q) - sum(q) of row r of the NB (1 or 2) tiles at tile + i * tstride, against one
 * token's tables: two tiles share each table load (the loads, not the lookups, bound one tile alone). */
BN_FN void F(i2l_tiles)(const uint8_t *tile, int64_t tstride, int64_t S, const int8_t *tab, int32_t *dots,
                        const int NB) {
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    __m256i acc32[2][4];
    for (int b = 0; b < NB; b++)
        for (int i = 0; i < 4; i++) acc32[b][i] = _mm256_setzero_si256();
    for (int64_t j0 = 0; j0 < S; j0 += BN_LUT_RUN) {
        const int64_t jend = S - j0 < BN_LUT_RUN ? S : j0 + BN_LUT_RUN;
        __m256i acc_lo[2], acc_hi[2]; /* int16: rows 0-15, 16-31 */
        for (int b = 0; b < NB; b++) acc_lo[b] = acc_hi[b] = _mm256_setzero_si256();
        for (int64_t jb = j0; jb < jend; jb += BN_LUT_BATCH) {
            const int64_t jn = jend - jb < BN_LUT_BATCH ? jend : jb + BN_LUT_BATCH;
            __m256i h8[2], l8[2];
            for (int b = 0; b < NB; b++) h8[b] = l8[b] = _mm256_setzero_si256();
            for (int64_t j = jb; j < jn; j++) {
                const int8_t *p0 = tab + 2 * j * BN_LUT_PAIR_BYTES, *p1 = p0 + BN_LUT_PAIR_BYTES;
                const __m256i th0 = F(lut_entries)(p0), tl0 = F(lut_entries)(p0 + 16);
                const __m256i th1 = F(lut_entries)(p1), tl1 = F(lut_entries)(p1 + 16);
                for (int b = 0; b < NB; b++) {
                    /* a tile is one stream of a few KB, too short for the hardware prefetcher to ramp up on:
                     * fetch the next pair of tiles (contiguous with this one) as this one is read */
                    _mm_prefetch((const char *)(tile + (2 + b) * tstride + j * BN_LUT_ROWS), _MM_HINT_T0);
                    const __m256i w = F(load)(tile + b * tstride + j * BN_LUT_ROWS);
                    const __m256i nh = _mm256_and_si256(_mm256_srli_epi16(w, 4), m0f);
                    const __m256i nl = _mm256_and_si256(w, m0f);
                    h8[b] = _mm256_add_epi8(h8[b], _mm256_add_epi8(_mm256_shuffle_epi8(th0, nh),
                                                                   _mm256_shuffle_epi8(th1, nl)));
                    l8[b] = _mm256_add_epi8(l8[b], _mm256_add_epi8(_mm256_shuffle_epi8(tl0, nh),
                                                                   _mm256_shuffle_epi8(tl1, nl)));
                }
            }
            for (int b = 0; b < NB; b++) { /* 32 * hi + lo per row, in int16 */
                const __m256i hlo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(h8[b]));
                const __m256i hhi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(h8[b], 1));
                const __m256i llo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(l8[b]));
                const __m256i lhi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(l8[b], 1));
                acc_lo[b] = _mm256_add_epi16(acc_lo[b], _mm256_add_epi16(_mm256_slli_epi16(hlo, 5), llo));
                acc_hi[b] = _mm256_add_epi16(acc_hi[b], _mm256_add_epi16(_mm256_slli_epi16(hhi, 5), lhi));
            }
        }
        for (int b = 0; b < NB; b++) {
            acc32[b][0] = _mm256_add_epi32(acc32[b][0], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc_lo[b])));
            acc32[b][1] = _mm256_add_epi32(acc32[b][1], _mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc_lo[b], 1)));
            acc32[b][2] = _mm256_add_epi32(acc32[b][2], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc_hi[b])));
            acc32[b][3] = _mm256_add_epi32(acc32[b][3], _mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc_hi[b], 1)));
        }
    }
    for (int b = 0; b < NB; b++)
        for (int i = 0; i < 4; i++) _mm256_storeu_si256((__m256i *)(dots + 32 * b + 8 * i), acc32[b][i]);
}

/* Rows [r0, r1) of T tokens, two tiles at a time: each tile's packed bytes are read from memory once and reused
 * from the cache for every token. A range that cuts a tile computes the whole tile and keeps its own rows. */
BN_FN void F(i2l_rows)(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1, const int8_t *tables,
                       const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    const int64_t S = (K + 3) / 4, tb = bn_lut_table_bytes(K), tstride = S * BN_LUT_ROWS;
    const int64_t tend = (r1 + BN_LUT_ROWS - 1) / BN_LUT_ROWS;
    int32_t dots[2 * BN_LUT_ROWS] __attribute__((aligned(32)));
    for (int64_t t0 = r0 / BN_LUT_ROWS; t0 < tend; t0 += 2) {
        const int NB = tend - t0 >= 2 ? 2 : 1;
        const int64_t base = t0 * BN_LUT_ROWS;
        const int64_t lo = r0 > base ? r0 : base, hi = r1 < base + NB * BN_LUT_ROWS ? r1 : base + NB * BN_LUT_ROWS;
        for (int64_t t = 0; t < T; t++) {
            if (NB == 2) F(i2l_tiles)(lut + t0 * tstride, tstride, S, tables + t * tb, dots, 2);
            else F(i2l_tiles)(lut + t0 * tstride, tstride, S, tables + t * tb, dots, 1);
            const __m256 vsum = _mm256_set1_ps((float)qi[t].sum), vs = _mm256_set1_ps(qi[t].scale);
            const __m256 vw = _mm256_set1_ps(wscale);
            float out[2 * BN_LUT_ROWS];
            for (int i = 0; i < NB * BN_LUT_ROWS; i += 8) {
                /* dot = sum(v) + sum(q); then bn_i2s_finish's steps, eight rows at a time */
                const __m256i d = _mm256_add_epi32(_mm256_load_si256((const __m256i *)(dots + i)),
                                                   _mm256_set1_epi32(qi[t].sum));
                const __m256 v = _mm256_div_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(d), vsum), vs);
                _mm256_storeu_ps(out + i, _mm256_mul_ps(v, vw));
            }
            for (int64_t r = lo; r < hi; r++) y[t * ldy + r] = out[r - base];
        }
    }
}

BN_API void F(i2l_gemv)(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1, const int8_t *tables,
                        const bn_qinfo *qi, float wscale, float *y) {
    BN_MATMUL_ENTRY(BN_K_I2L_GEMV, 1);
    F(i2l_rows)(lut, K, r0, r1, tables, qi, 1, wscale, y, 0);
}

BN_API void F(i2l_gemm)(const uint8_t *lut, int64_t K, int64_t r0, int64_t r1, const int8_t *tables,
                        const bn_qinfo *qi, int64_t T, float wscale, float *y, int64_t ldy) {
    BN_MATMUL_ENTRY(BN_K_I2L_GEMM, T);
    F(i2l_rows)(lut, K, r0, r1, tables, qi, T, wscale, y, ldy);
}

#undef BN_LUT_BATCH
#undef BN_LUT_RUN

static const bn_kernels F(table) = {
    .variant = BN_VARIANT,
    .quantize_act = F(quantize_act),
    .i2s_gemv = F(i2s_gemv),
    .i2s_gemm = F(i2s_gemm),
    .tq2_gemv = F(tq2_gemv),
    .tq2_gemm = F(tq2_gemm),
    .tq1_gemv = F(tq1_gemv),
    .tq1_gemm = F(tq1_gemm),
    .f16_gemm = F(f16_gemm),
    .bf16_gemm = F(bf16_gemm),
    .q80_gemm = F(q80_gemm),
    .q80_q8_gemm = F(q80_q8_gemm),
    .lut_tables = bn_lut_tables,
    .i2l_gemv = F(i2l_gemv),
    .i2l_gemm = F(i2l_gemm),
    .f32_gemm = F(f32_gemm),
    .attention = F(attention),
    .attention_q8 = F(attention_q8),
};

const bn_kernels *BN_GETTER(void) { return &F(table); }

#undef F
