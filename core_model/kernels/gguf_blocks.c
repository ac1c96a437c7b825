/* Matrix products straight from GGUF quantised blocks (Q4_0, Q4_1, Q8_0), float32 activations.
 *
 * Why: decode at batch 1 streams every weight once per token. Dequantised to float32, SmolLM2-135M is 540 MB
 * per token and DRAM-bound; kept in the GGUF's own blocks it is about 100 MB. The values are the GGUF's (w = d*q + m
 * per 32 weights, d and m float16: exactly so in lav2_dequant/lav2_rows; the products may fuse d*q + m into one
 * rounding), the summation order differs from a float32 BLAS product, and the activations are never quantised by
 * default (unlike llama.cpp's Q8 dot products; int8 activations are an opt-in, below).
 *
 * Built at run time by core_model/quant.py with the machine's C compiler (-O3 -march=native -fopenmp) and called
 * through ctypes. The OpenMP runtime is the one torch already loaded (same soname), so these loops share torch's
 * threads instead of competing with them. Portable C: GCC/Clang vector extensions sized to the machine's
 * registers (16 floats with AVX-512, 8 with AVX, 4 otherwise), no intrinsics.
 *
 * Row layout (GGML, little-endian). The kernels walk every type in sub-blocks of 32 weights (index g along K):
 *   Q4_0: 32 weights, 18 bytes: fp16 d, 16 bytes of nibbles     w[j] = d*(lo_j - 8), w[j+16] = d*(hi_j - 8)
 *   Q4_1: 32 weights, 20 bytes: fp16 d, fp16 m, 16 nibble bytes w[j] = d*lo_j + m,   w[j+16] = d*hi_j + m
 *   Q8_0: 32 weights, 34 bytes: fp16 d, 32 int8                 w[j] = d*q_j
 *   Q4_K: 256 weights, 144 bytes: fp16 d, fp16 dmin, 12 bytes of 6-bit (scale, min) for 8 sub-blocks, 128 nibble
 *         bytes (sub-blocks 2i, 2i+1 = low, high nibbles of bytes 32i..32i+31)   w = (d*sc)*q - dmin*mn
 *   Q6_K: 256 weights, 210 bytes: 128 bytes low nibbles, 64 bytes 2-bit highs, 16 int8 scales (one per 16
 *         weights), fp16 d                                                       w = (d*sc)*(q - 32)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LAV2_ABI 4
#define QK 32
#define MB 8              /* activation rows per pass over a weight row in the few-rows kernel (4 until the
                           * two-FMA blocks below; with them 8 measured 20.6 vs 21.3 ms per batch-8 step) */
#define NTILE 32          /* weight rows per tile: every MB activation rows sweep a tile (in L1/L2) before the next */
#define PREFETCH_BYTES 4096 /* how far ahead of its reads the row kernel prefetches the weight stream */

enum { T_F32 = 0, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_Q4_K = 12, T_Q6_K = 14 }; /* GGML type ids */

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4
#endif
#define NV (QK / VL)  /* vectors per block */
#define ALIGNED(n) (((int64_t)(n) + 15) & ~(int64_t)15) /* floats, rounded up to whole 64-byte lines */

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
typedef uint8_t vu8 __attribute__((vector_size(VL)));
typedef uint8_t v16u8 __attribute__((vector_size(16)));
typedef uint16_t v8u16 __attribute__((vector_size(16)));
#if VL == 8
typedef uint64_t word_t; /* VL bytes in one integer register, for byte shifts on narrow vectors */
#elif VL == 4
typedef uint32_t word_t;
#endif

/* bytes -> float lanes; the int32 step makes compilers emit one widening move instead of scalar extracts */
#define TOF(v) __builtin_convertvector(__builtin_convertvector((v), vi), vf)
#define AI static inline __attribute__((always_inline))

#if defined(__FLT16_MAX__) && !defined(LAV2_NO_FLOAT16)
AI float h2f(const uint8_t *p) { _Float16 h; memcpy(&h, p, 2); return (float)h; }
#else
/* exact IEEE half -> float for compilers without _Float16 */
AI float h2f(const uint8_t *p) {
    uint16_t h; memcpy(&h, p, 2);
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, f;
    if (exp == 0) {
        if (mant == 0) {
            f = sign;
        } else { /* subnormal: normalise */
            exp = 113;
            while (!(mant & 0x400u)) { mant <<= 1; exp--; }
            f = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        f = sign | 0x7f800000u | (mant << 13);
    } else {
        f = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float out; memcpy(&out, &f, 4); return out;
}
#endif

AI vf loadv(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
typedef float vf2 __attribute__((vector_size(8)));
AI float hsum(vf v) { /* pairwise: log2(VL) dependent adds */
#if VL == 16 /* the same adds in registers (the array form below went through the stack: ~15% of a batch-8 step) */
    const vf8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7)
                + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    const vf4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    const vf2 c = __builtin_shufflevector(b, b, 0, 1) + __builtin_shufflevector(b, b, 2, 3);
    return c[0] + c[1];
#endif
    float s[VL]; memcpy(s, &v, sizeof v);
    for (int w = VL / 2; w > 0; w /= 2)
        for (int i = 0; i < w; i++) s[i] += s[i + w];
    return s[0];
}

static int block_bytes(int type) { /* bytes per block (a super-block of 256 weights for the K types) */
    switch (type) {
    case T_Q4_0: return 18;
    case T_Q4_1: return 20;
    case T_Q8_0: return 34;
    case T_Q4_K: return 144;
    case T_Q6_K: return 210;
    default: return 0;
    }
}
static int block_weights(int type) { return type == T_Q4_K || type == T_Q6_K ? 256 : QK; }
static int64_t row_bytes(int type, int64_t K) { return K / block_weights(type) * block_bytes(type); }

/* VL bytes from p as lanes of (byte >> shift) & mask. Shifts are done in 16-bit lanes (VL 16) or in one integer
 * register (narrower): x86 has no byte shift and compilers scalarise one; the final byte-vector mask also keeps
 * GCC from scalarising the widening that follows (measured: 14 -> 7 cycles per Q4_1 block with AVX2). With
 * shift + bits(mask) <= 8 no bit crosses into a neighbouring byte's result. */
AI vu8 load_bits(const uint8_t *p, int shift, uint8_t mask) {
#if VL == 16
    v16u8 raw; memcpy(&raw, p, 16);
    return (v16u8)((v8u16)raw >> shift) & mask;
#else
    word_t u;
    memcpy(&u, p, VL);
    u >>= shift;
    vu8 q; memcpy(&q, &u, VL);
    return q & mask;
#endif
}

AI vu8 shl4(vu8 q) { /* q << 4 for bytes below 16 (same reason as above) */
#if VL == 16
    return (v16u8)((v8u16)q << 4);
#else
    word_t u;
    memcpy(&u, &q, VL);
    u <<= 4;
    memcpy(&q, &u, VL);
    return q;
#endif
}

/* Sub-block g of a row (weights 32g..32g+31) as NV vectors of VL weights, before the offset: w[v*VL + i] =
 * out[v][i] + *m (m = 0 except for Q4_1 and Q4_K). Every value is computed with the same operations and roundings
 * as gguf-py's dequantize. */
AI void unpack(int type, const uint8_t *row, int64_t g, vf out[NV], float *m) {
    if (type == T_Q4_K) {
        const uint8_t *b = row + (g >> 3) * 144, *sc = b + 4;
        const int j = (int)(g & 7);
        int s, mn; /* 6-bit scale and min of sub-block j */
        if (j < 4) {
            s = sc[j] & 63; mn = sc[j + 4] & 63;
        } else {
            s = (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4); mn = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
        }
        const float d = h2f(b) * (float)s;
        for (int v = 0; v < NV; v++) out[v] = TOF(load_bits(b + 16 + (j >> 1) * 32 + v * VL, (j & 1) * 4, 15)) * d;
        *m = -(h2f(b + 2) * (float)mn);
        return;
    }
    if (type == T_Q6_K) {
        const uint8_t *b = row + (g >> 3) * 210;
        const int j = (int)(g & 7), h = j >> 2, l = j & 3;
        const float d = h2f(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192) + 2 * j; /* two scales: weights 0..15 and 16..31 */
        for (int v = 0; v < NV; v++) {
            const vu8 lo = load_bits(b + 64 * h + (l & 1) * 32 + v * VL, (l >> 1) * 4, 15);
            const vu8 hi = load_bits(b + 128 + 32 * h + v * VL, 2 * l, 3);
            out[v] = (TOF(lo | shl4(hi)) - 32.f) * (d * (float)sc[v * VL / 16]);
        }
        *m = 0.f;
        return;
    }
    const uint8_t *b = row + g * block_bytes(type);
    const float d = h2f(b);
    if (type == T_Q8_0) {
        for (int v = 0; v < NV; v++) {
            /* a vector op before the widening keeps GCC from scalarising it (measured 4x on the LM head);
             * the flipped sign bit makes the bytes q + 128, undone exactly in float */
            vu8 q; memcpy(&q, b + 2 + v * VL, VL);
            q ^= 0x80;
            out[v] = (TOF(q) - 128.f) * d;
        }
        *m = 0.f;
        return;
    }
    const uint8_t *qs = b + (type == T_Q4_1 ? 4 : 2);
    for (int v = 0; v < NV; v++) { /* weights 0..15: low nibbles of bytes 0..15; 16..31: their high nibbles */
        const vu8 q = load_bits(qs + (v % (NV / 2)) * VL, v < NV / 2 ? 0 : 4, 15);
        /* Q4_0 is d * (q - 8): the same exact steps and single rounding as the reference */
        out[v] = type == T_Q4_0 ? (TOF(q) - 8.f) * d : TOF(q) * d;
    }
    *m = type == T_Q4_1 ? h2f(b + 2) : 0.f;
}

/* One row of K weights as float32 into out (dequantisation, embedding rows). The offset is added behind a call
 * boundary, so the compiler cannot fuse d*q + m into one multiply-add and the values round exactly like the
 * reference (gguf-py: (d*q) + m); the products do not need that and take the inlined, possibly fused, form. */
static __attribute__((noinline)) void unpack_call(int type, const uint8_t *row, int64_t g, vf out[NV], float *m) {
    unpack(type, row, g, out, m);
}

static void unpack_row(int type, const uint8_t *row, int64_t K, float *out) {
    for (int64_t g = 0; g < K / QK; g++) {
        vf w[NV]; float mn;
        unpack_call(type, row, g, w, &mn);
        for (int v = 0; v < NV; v++) {
            const vf t = w[v] + mn;
            memcpy(out + g * QK + v * VL, &t, sizeof t);
        }
    }
}

/* ---- few activation rows (decode): unpack each block once for up to MB rows, straight from memory.
 * One weight row x M activation rows: y[m*ldy] = sum_k x[m*K + k] * W[k]. Every block is scaled (and offset) once
 * into float weights, so each activation row costs exactly one FMA per weight vector (before: the unscaled dot
 * product per row, then a scale and a scalar offset term per row; the batch-8 step went 23.4-24.8 -> 20.6-21.6 ms
 * and batch 1 7.4-8.0 -> 6.9-7.0 ms, bench/decode_step.py, 2026-12-07, Zen 4, SmolLM2 Q4_1/Q8_0). Even and odd
 * sub-blocks feed two independent accumulator chains per row. A row's result does not depend on how many rows
 * share the pass, so batched == single. (Tiles of 2-4 weight rows sharing the activation loads were measured
 * slower: 4.6 vs 3.2 ms per SmolLM2 token.) */
AI void block_dot(int type, const uint8_t *row, int64_t g, const float *x, int64_t K, const int M, vf acc[MB]) {
    vf w[NV]; float mn;
    unpack(type, row, g, w, &mn);
    for (int v = 0; v < NV; v++) w[v] += mn;
    for (int m = 0; m < M; m++) {
        const float *xm = x + m * K + g * QK;
        vf t = acc[m];
        for (int v = 0; v < NV; v++) t += w[v] * loadv(xm + v * VL);
        acc[m] = t;
    }
}

AI void row_dot(int type, const uint8_t *row, int64_t G, const float *x, int64_t K, const int M, float *y,
                int64_t ldy) {
    vf a0[MB], a1[MB];
    for (int m = 0; m < M; m++) { a0[m] = (vf){0}; a1[m] = (vf){0}; }
    int64_t g = 0;
    const int64_t sub_bytes = block_bytes(type) / (block_weights(type) / QK); /* bytes per 32 weights */
    for (; g + 1 < G; g += 2) {
        /* the hardware prefetcher stops at 4 KiB pages; a software prefetch this far ahead keeps the stream of
         * rows flowing (measured 23 -> 13 ms per SmolLM2 token, one thread, the row kernel) */
        __builtin_prefetch(row + PREFETCH_BYTES + g * sub_bytes);
        block_dot(type, row, g, x, K, M, a0);
        block_dot(type, row, g + 1, x, K, M, a1);
    }
    if (g < G) block_dot(type, row, g, x, K, M, a0);
    for (int m = 0; m < M; m++) y[m * ldy] = hsum(a0[m] + a1[m]);
}

/* Rows [n0, n1) for all M activation rows: per tile of NTILE weight rows, MB (or MB/2) activation rows at a time
 * sweep the tile (those rows stay in L1, the tile in L2). The one kernel for every M: a row's result never depends
 * on how many rows came with it — prefill and decode, batched and single alike. It replaced an unpack-then-
 * micro-kernel path for 16+ rows, whose inner loop GCC compiled to two loads per FMA: the products of a 106-token
 * SmolLM2 prefill (210 matrices in model order, 2 threads) went 182-190 -> 160-178 ms, and decode is unchanged. */
AI void rows_range(int type, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const float *x, int64_t M,
                   float *y, int64_t N) {
    const int64_t G = K / QK, rb = row_bytes(type, K);
    const int64_t mb = K * MB > 6144 ? MB / 2 : MB; /* MB rows of x in 24 KiB of L1 (the FFN's down product, K
                                                      * 1536: 1.84 -> 1.49 ms at 106 rows with 4 rows a pass) */
    for (int64_t t0 = n0; t0 < n1; t0 += NTILE)
    for (int64_t m0 = 0; m0 < M; m0 += mb)
        for (int64_t n = t0; n < (t0 + NTILE < n1 ? t0 + NTILE : n1); n++) {
            const float *xm = x + m0 * K;
            float *yn = y + m0 * N + n;
            switch (M - m0 < mb ? M - m0 : mb) {
            case 1: row_dot(type, w + n * rb, G, xm, K, 1, yn, N); break;
            case 2: row_dot(type, w + n * rb, G, xm, K, 2, yn, N); break;
            case 3: row_dot(type, w + n * rb, G, xm, K, 3, yn, N); break;
            case 4: row_dot(type, w + n * rb, G, xm, K, 4, yn, N); break;
#if MB > 4
            case 5: row_dot(type, w + n * rb, G, xm, K, 5, yn, N); break;
            case 6: row_dot(type, w + n * rb, G, xm, K, 6, yn, N); break;
            case 7: row_dot(type, w + n * rb, G, xm, K, 7, yn, N); break;
            default: row_dot(type, w + n * rb, G, xm, K, 8, yn, N); break;
#endif
            }
        }
}

/* one copy per block type, so the type branches in unpack() and row_dot() fold away */
#define ROWS_RANGE(T)                                                                                      \
    static void rows_##T(const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const float *x, int64_t M,   \
                         float *y, int64_t N) {                                                            \
        rows_range(T, w, n0, n1, K, x, M, y, N);                                                           \
    }
ROWS_RANGE(T_Q4_0)
ROWS_RANGE(T_Q4_1)
ROWS_RANGE(T_Q8_0)
ROWS_RANGE(T_Q4_K)
ROWS_RANGE(T_Q6_K)

/* ---- int8 activations (opt-in: LAV2_ACTIVATIONS=int8 / load_model(activations="int8")) for Q4_0, Q4_1, Q8_0.
 * The fp32 kernels above stay the default and are not touched by this path.
 *
 * Each activation row is quantised per block of 32 (the weight blocks' width): d = max|x| / 127, q = x * (1/d)
 * rounded to nearest-even (one fused multiply-add), clamped to [-127, 127] (as llama.cpp's Q8_0/Q8_1). The dot
 * products are exact integers, formed with AVX-512 VNNI (vpdpbusd) where the compiler targets it, else AVX2
 * (vpmaddubsw + vpmaddwd: exact, no pair of products leaves int16), else plain C. Blocks go in groups of four
 * (the last one zero-padded): one 8-lane int32 register collects all 128 products of a group, lanes 2c and 2c+1
 * holding block P[c] of the group (P = 0, 2, 1, 3; lane l sums bytes 4(l&1)..4(l&1)+3 of each 8-byte chunk
 * k = 0..3 of the block), so the float work is one conversion, one multiply and one FMA per row per four blocks:
 *   S[l] = d_w(block of l) * d_x(block of l);  acc[l] = fma((float)lanes[l], S[l], acc[l])   (groups in order)
 *   main = pairwise sum of the 8 lanes of acc
 *   Q4_1: off = sum_g m_g * s_g over 8 lanes (g % 8, fma), pairwise, with s_g the float32 sum of the block's
 *         activations (in 8 lanes of 4, then pairwise: the exact offset term up to float rounding; llama.cpp uses
 *         the quantised sum);  y = main + off
 * Every implementation does these float operations in this order, so all give the same bits (tested: the VNNI,
 * AVX2 and C builds against each other). A row's result depends only on that row (per-row quantisation, one
 * kernel for any number of rows), so batched == single still holds.
 * The activations are stored in the register layout (chunk c of register k of a group = bytes 8k..8k+7 of block
 * P[c]). Q4_0 and Q8_0 weights are signed: with VNNI the activations are stored biased (q + 128, unsigned) and
 * the group's 128 * sum(w) per lane is subtracted in the accumulator's initial value; with AVX2 the sign trick
 * |w| * (q * sign(w)) keeps the products in range; the lanes are the same exact integers either way. */
#define I8_TYPE(t) ((t) == T_Q4_0 || (t) == T_Q4_1 || (t) == T_Q8_0)
#define GPAD(G) (((G) + 7) & ~(int64_t)7)
#define G4(G) (((G) + 3) & ~(int64_t)3)
#define I8_MAX_K 8192 /* rows up to this wide (the stack table of offsets in i8_row) */
#define I8_OK(type, K) (I8_TYPE(type) && (K) <= I8_MAX_K)
#define I8_MAGIC 12582912.f /* 1.5 * 2^23: fma(x, s, M) - M rounds x * s (|x * s| < 2^22) to an integer, ties to even */
#if defined(__AVX2__) && defined(__FMA__) && !defined(LAV2_SCALAR_INT8)
#include <immintrin.h>
#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && !defined(LAV2_NO_VNNI)
#define I8_IMPL 2
#define I8_BIAS 1 /* signed weights: activations stored as q + 128 */
#elif defined(__AVXVNNI__) && !defined(LAV2_NO_VNNI)
#define I8_IMPL 2
#define I8_BIAS 1
#else
#define I8_IMPL 1
#define I8_BIAS 0
#endif
#else
#define I8_IMPL 0
#define I8_BIAS 0
#endif
#if defined(__AVX512F__) && I8_IMPL
#define MB8 16 /* activation rows per pass over a weight row: 16 accumulators + the group's registers of 32 */
#else
#define MB8 4
#endif
static const int I8_P[4] = {0, 2, 1, 3}; /* the block of chunk c in a group (its own inverse) */

/* one activation matrix quantised for a product: q (M x G4(G)*32 bytes, the register layout above); d (M x
 * G4(G)/4 x 8 floats: the scales of each group's lanes, 0 for padding blocks); s (M x GPAD(G) block sums,
 * zero-padded) */
typedef struct { uint8_t *q; float *d, *s; int64_t G, gp, kq; } qin_t;

static int64_t qin_floats(int64_t M, int64_t K) { /* scratch a qin_t of M x K needs, in floats */
    const int64_t G = K / QK;
    return ALIGNED(M * G4(G) * QK / 4) + ALIGNED(M * G4(G) * 2) + ALIGNED(M * GPAD(G));
}

static void qin_init(qin_t *o, float *buf, int64_t M, int64_t K) {
    const int64_t G = K / QK;
    o->G = G; o->gp = GPAD(G); o->kq = G4(G) * QK;
    o->q = (uint8_t *)buf;
    o->d = buf + ALIGNED(M * G4(G) * QK / 4);
    o->s = o->d + ALIGNED(M * G4(G) * 2);
}

AI float hsum8(const float a[8]) { /* pairwise, the same order as the vector version */
    float s[8];
    for (int i = 0; i < 8; i++) s[i] = a[i];
    for (int w = 4; w > 0; w /= 2)
        for (int i = 0; i < w; i++) s[i] += s[i + w];
    return s[0];
}

/* byte offset of weight/activation j (0..31) of block g in a row of the register layout */
AI int64_t i8_pos(int64_t g, int j) { return (g >> 2) * 128 + (j >> 3) * 32 + I8_P[g & 3] * 8 + (j & 7); }

/* x (M x K) -> o for a product with weights of `type` */
static void quantize_rows(int type, const float *x, int64_t M, int64_t K, qin_t *o) {
    const int64_t G = K / QK, gp = GPAD(G), Gq = G4(G);
    const int bias = I8_BIAS && type != T_Q4_1;
    for (int64_t m = 0; m < M; m++) {
        float *s = o->s + m * gp, *dl = o->d + m * Gq * 2;
        uint8_t *qr = o->q + m * o->kq;
        for (int64_t g = 0; g < Gq; g++) {
            float d = 0.f, sum = 0.f;
            uint8_t qb[QK];
            if (g < G) {
                /* eight lanes (i, i+8, i+16, i+24), then pairwise: written so compilers vectorise it without
                 * reassociating anything, the same bits in every build */
                const float *xb = x + m * K + g * QK;
                float t[8], a[8];
                for (int i = 0; i < 8; i++) {
                    t[i] = ((xb[i] + xb[i + 8]) + xb[i + 16]) + xb[i + 24];
                    const float a0 = fabsf(xb[i]), a1 = fabsf(xb[i + 8]), a2 = fabsf(xb[i + 16]), a3 = fabsf(xb[i + 24]);
                    const float m01 = a0 > a1 ? a0 : a1, m23 = a2 > a3 ? a2 : a3;
                    a[i] = m01 > m23 ? m01 : m23;
                }
                float amax = 0.f;
                for (int i = 0; i < 8; i++) amax = a[i] > amax ? a[i] : amax;
                sum = hsum8(t);
                d = amax / 127.f;
                const float id = d > 0.f ? 1.f / d : 0.f;
                for (int j = 0; j < QK; j++) {
                    float v = fmaf(xb[j], id, I8_MAGIC) - I8_MAGIC;
                    v = v > 127.f ? 127.f : v;
                    v = v < -127.f ? -127.f : v;
                    qb[j] = (uint8_t)((int)v + (bias ? 128 : 0));
                }
            } else {
                memset(qb, bias ? 128 : 0, QK); /* padding block: its weights are zero */
            }
            for (int k = 0; k < 4; k++) memcpy(qr + i8_pos(g, 8 * k), qb + 8 * k, 8);
            const int c = I8_P[g & 3];
            dl[(g >> 2) * 8 + 2 * c] = dl[(g >> 2) * 8 + 2 * c + 1] = d;
            if (g < gp) s[g] = sum;
        }
        for (int64_t g = Gq; g < gp; g++) s[g] = 0.f;
    }
}

/* weight block g as 32 integers (natural order) plus its scale (and Q4_1's offset); zeros past the row */
AI void i8_weights(int type, const uint8_t *row, int64_t G, int64_t g, int8_t w[QK], float *d, float *m) {
    if (g >= G) { memset(w, 0, QK); *d = 0.f; *m = 0.f; return; }
    const uint8_t *b = row + g * block_bytes(type);
    *d = h2f(b);
    *m = type == T_Q4_1 ? h2f(b + 2) : 0.f;
    if (type == T_Q8_0) { memcpy(w, b + 2, QK); return; }
    const uint8_t *qs = b + (type == T_Q4_1 ? 4 : 2);
    const int sub = type == T_Q4_0 ? 8 : 0;
    for (int j = 0; j < QK / 2; j++) { w[j] = (int8_t)((qs[j] & 15) - sub); w[j + 16] = (int8_t)((qs[j] >> 4) - sub); }
}

#if I8_IMPL
AI float hsum8v(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* s[i] += s[i + 4] */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                          /* s[i] += s[i + 2] */
    s = _mm_add_ss(s, _mm_movehdup_ps(s));                                           /* s[0] += s[1] */
    return _mm_cvtss_f32(s);
}

#if I8_IMPL == 2
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define DPBUSD(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#else
#define DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#endif
#else /* exact while a pair of u8 x s8 products fits int16: at most 2 * 128 * 127 here */
AI __m256i DPBUSD(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
#endif

/* weights 0..15 and 16..31 of blocks g and g + 1 as [g | g+1] registers (zeros for blocks past G) */
AI void i8_pair(int type, const uint8_t *row, int64_t G, int64_t g, __m256i *lo, __m256i *hi) {
    const int64_t bb = block_bytes(type);
    const uint8_t *b0 = row + g * bb, *b1 = b0 + bb;
    const int have0 = g < G, have1 = g + 1 < G;
    if (type == T_Q8_0) {
        const __m128i z = _mm_setzero_si128();
        *lo = _mm256_set_m128i(have1 ? _mm_loadu_si128((const __m128i *)(b1 + 2)) : z,
                               have0 ? _mm_loadu_si128((const __m128i *)(b0 + 2)) : z);
        *hi = _mm256_set_m128i(have1 ? _mm_loadu_si128((const __m128i *)(b1 + 18)) : z,
                               have0 ? _mm_loadu_si128((const __m128i *)(b0 + 18)) : z);
        return;
    }
    const int off = type == T_Q4_1 ? 4 : 2;
    const __m128i none = _mm_set1_epi8(type == T_Q4_0 ? (char)0x88 : 0);
    const __m128i r0 = have0 ? _mm_loadu_si128((const __m128i *)(b0 + off)) : none;
    const __m128i r1 = have1 ? _mm_loadu_si128((const __m128i *)(b1 + off)) : none;
    const __m256i y = _mm256_set_m128i(r1, r0), mask = _mm256_set1_epi8(15);
    *lo = _mm256_and_si256(y, mask);
    *hi = _mm256_and_si256(_mm256_srli_epi16(y, 4), mask);
    if (type == T_Q4_0) { /* q - 8; a missing block's 0x88 gives 0 */
        *lo = _mm256_sub_epi8(*lo, _mm256_set1_epi8(8));
        *hi = _mm256_sub_epi8(*hi, _mm256_set1_epi8(8));
    }
}

AI float i8_scale(int type, const uint8_t *row, int64_t G, int64_t g) {
    return g < G ? h2f(row + g * block_bytes(type)) : 0.f;
}

AI void i8_row(int type, const uint8_t *row, const qin_t *xi, const int M, float *y, int64_t ldy) {
    const int64_t G = xi->G, gp = xi->gp, bb = block_bytes(type), Gq = G4(G), kq = xi->kq;
    float mb[GPAD(I8_MAX_K / QK)] __attribute__((aligned(32))); /* offsets m_g, zero-padded */
    __m256 acc[MB8];
#pragma GCC unroll 16
    for (int m = 0; m < M; m++) acc[m] = _mm256_setzero_ps();
    const __m256i dup = _mm256_set_epi32(3, 3, 2, 2, 1, 1, 0, 0);
    for (int64_t g = 0; g < Gq; g += 4) {
        __builtin_prefetch(row + PREFETCH_BYTES + g * bb);
        __builtin_prefetch(row + PREFETCH_BYTES + 64 + g * bb);
        __m256i l01, h01, l23, h23;
        i8_pair(type, row, G, g, &l01, &h01);
        i8_pair(type, row, G, g + 2, &l23, &h23);
        __m256i w[4] = {_mm256_unpacklo_epi64(l01, l23), _mm256_unpackhi_epi64(l01, l23),
                        _mm256_unpacklo_epi64(h01, h23), _mm256_unpackhi_epi64(h01, h23)};
        /* the lanes' weight scales: blocks 0, 2, 1, 3 of the group, each twice */
        __m256 dw;
#if defined(__AVX512VL__) && defined(__F16C__)
        if (type == T_Q4_1 && g + 4 <= G) {
            /* the four (d, m) headers at bytes 0, 20, 40, 60 of the group: one permute of two loads, one
             * conversion (exact, as h2f) */
            const __m256i h = _mm256_permutex2var_epi32(_mm256_loadu_si256((const __m256i *)(row + g * bb)),
                                                        _mm256_set_epi32(0, 0, 0, 0, 15, 10, 5, 0),
                                                        _mm256_loadu_si256((const __m256i *)(row + g * bb + 32)));
            const __m256 dm = _mm256_cvtph_ps(_mm256_castsi256_si128(h)); /* d0 m0 d1 m1 d2 m2 d3 m3 */
            dw = _mm256_permutevar8x32_ps(dm, _mm256_set_epi32(6, 6, 2, 2, 4, 4, 0, 0));
            _mm_storeu_ps(mb + g, _mm256_castps256_ps128(_mm256_permutevar8x32_ps(dm, _mm256_set_epi32(
                7, 5, 3, 1, 7, 5, 3, 1))));
        } else
#endif
        {
            dw = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_set_ps(
                i8_scale(type, row, G, g + 3), i8_scale(type, row, G, g + 1), i8_scale(type, row, G, g + 2),
                i8_scale(type, row, G, g))), dup);
            if (type == T_Q4_1)
                for (int j = 0; j < 4; j++) mb[g + j] = g + j < G ? h2f(row + (g + j) * bb + 2) : 0.f;
        }
#if I8_IMPL == 2
        __m256i init = _mm256_setzero_si256(); /* signed weights: -128 * (each lane's sum of weights) */
        if (type != T_Q4_1) {
            const __m256i c80 = _mm256_set1_epi8((char)0x80);
            __m256i c = DPBUSD(_mm256_setzero_si256(), c80, w[0]);
            c = DPBUSD(c, c80, w[1]); c = DPBUSD(c, c80, w[2]); c = DPBUSD(c, c80, w[3]);
            init = _mm256_sub_epi32(init, c);
        }
#else
        const __m256i init = _mm256_setzero_si256();
        __m256i wa[4];
        for (int k = 0; k < 4; k++) wa[k] = type == T_Q4_1 ? w[k] : _mm256_abs_epi8(w[k]);
#endif
        /* fully unrolled: each row's accumulator stays in a register (a loop kept them in memory) */
#pragma GCC unroll 16
        for (int m = 0; m < M; m++) {
            const uint8_t *xq = xi->q + m * kq + g * QK;
            __m256i lanes = init;
            for (int k = 0; k < 4; k++) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + 32 * k));
                if (type == T_Q4_1) lanes = DPBUSD(lanes, w[k], x);
#if I8_IMPL == 2
                else lanes = DPBUSD(lanes, x, w[k]); /* x biased: (q + 128) * w, minus 128 * w in init */
#else
                else lanes = DPBUSD(lanes, wa[k], _mm256_sign_epi8(x, w[k]));
#endif
            }
            const __m256 sc = _mm256_mul_ps(dw, _mm256_loadu_ps(xi->d + m * Gq * 2 + g * 2));
            acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), sc, acc[m]);
        }
    }
    for (int64_t j = Gq; j < gp; j++) mb[j] = 0.f;
    for (int m = 0; m < M; m++) {
        float yv = hsum8v(acc[m]);
        if (type == T_Q4_1) {
            __m256 o = _mm256_setzero_ps();
            const float *s = xi->s + m * gp;
            for (int64_t j = 0; j < gp; j += 8) o = _mm256_fmadd_ps(_mm256_load_ps(mb + j), _mm256_loadu_ps(s + j), o);
            yv += hsum8v(o);
        }
        y[m * ldy] = yv;
    }
}
#else
AI void i8_row(int type, const uint8_t *row, const qin_t *xi, const int M, float *y, int64_t ldy) {
    const int64_t G = xi->G, gp = xi->gp, Gq = G4(G);
    for (int m = 0; m < M; m++) {
        float acc[8] = {0}, o[8] = {0};
        const uint8_t *xq = xi->q + m * xi->kq;
        const float *dl = xi->d + m * Gq * 2;
        for (int64_t g0 = 0; g0 < Gq; g0 += 4) {
            int8_t w[4][QK]; float dw[4], mn[4];
            for (int j = 0; j < 4; j++) i8_weights(type, row, G, g0 + j, w[j], &dw[j], &mn[j]);
            for (int l = 0; l < 8; l++) {
                const int j = I8_P[l >> 1]; /* the block of lane l */
                int32_t lane = 0;
                for (int k = 0; k < 4; k++)
                    for (int t = 0; t < 4; t++) {
                        const int idx = 8 * k + 4 * (l & 1) + t;
                        lane += (int32_t)w[j][idx] * (int32_t)(int8_t)xq[i8_pos(g0 + j, idx)];
                    }
                acc[l] = fmaf((float)lane, dw[j] * dl[g0 * 2 + l], acc[l]);
            }
            for (int j = 0; j < 4; j++) if (g0 + j < gp) o[(g0 + j) % 8] = fmaf(mn[j], xi->s[m * gp + g0 + j], o[(g0 + j) % 8]);
        }
        for (int64_t g = Gq; g < gp; g++) o[g % 8] = fmaf(0.f, xi->s[m * gp + g], o[g % 8]);
        float yv = hsum8(acc);
        if (type == T_Q4_1) yv += hsum8(o);
        y[m * ldy] = yv;
    }
}
#endif

/* rows [n0, n1) of y (ldy apart) for all M activation rows of xi, MB8 at a time over tiles of NTILE weight rows
 * (as rows_range: the products of a 106-token prefill 150 -> 118 ms, 2026-12-07; decode unchanged). A pass takes
 * MB8 rows, else 8, else what is left: i8_row is instantiated for 1..8 and 16 rows only — each instance is fully
 * unrolled, and the seven of 9..15 rows were over half of the C file's compile time (the whole build 13.4 -> 6.2 s
 * without them, paid on a machine's first model load and by every test that builds a variant); the price: the
 * products of 12-15 rows 5-6% slower (two passes), 1-8, 16 and long prompts unchanged (bench/products.py A/B).
 * Rows are independent, so how they are grouped into passes changes no value. */
AI void i8_range(int type, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const qin_t *xi, int64_t M,
                 float *y, int64_t ldy) {
    const int64_t rb = row_bytes(type, K);
    for (int64_t t0 = n0; t0 < n1; t0 += NTILE)
    for (int64_t m0 = 0, rows; m0 < M; m0 += rows) {
        const int64_t left = M - m0;
        rows = left >= MB8 ? MB8 : left > 8 ? 8 : left;
        for (int64_t n = t0; n < (t0 + NTILE < n1 ? t0 + NTILE : n1); n++) {
            qin_t sub = *xi;
            sub.q += m0 * xi->kq; sub.d += m0 * G4(xi->G) * 2; sub.s += m0 * xi->gp;
            float *yn = y + m0 * ldy + n;
            switch (rows) {
            case 1: i8_row(type, w + n * rb, &sub, 1, yn, ldy); break;
            case 2: i8_row(type, w + n * rb, &sub, 2, yn, ldy); break;
            case 3: i8_row(type, w + n * rb, &sub, 3, yn, ldy); break;
#if MB8 == 16
            case 4: i8_row(type, w + n * rb, &sub, 4, yn, ldy); break;
            case 5: i8_row(type, w + n * rb, &sub, 5, yn, ldy); break;
            case 6: i8_row(type, w + n * rb, &sub, 6, yn, ldy); break;
            case 7: i8_row(type, w + n * rb, &sub, 7, yn, ldy); break;
            case 8: i8_row(type, w + n * rb, &sub, 8, yn, ldy); break;
            default: i8_row(type, w + n * rb, &sub, 16, yn, ldy); break;
#else
            default: i8_row(type, w + n * rb, &sub, 4, yn, ldy); break;
#endif
            }
        }
    }
}

static void i8_rows(int type, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const qin_t *xi, int64_t M,
                    float *y, int64_t ldy) {
    switch (type) { /* one copy per type, so the type branches fold away */
    case T_Q4_0: i8_range(T_Q4_0, w, n0, n1, K, xi, M, y, ldy); break;
    case T_Q4_1: i8_range(T_Q4_1, w, n0, n1, K, xi, M, y, ldy); break;
    default: i8_range(T_Q8_0, w, n0, n1, K, xi, M, y, ldy); break;
    }
}

/* ---- entry points (called through ctypes; the Python side validates shapes and dtypes) */
int lav2_abi_version(void) { return LAV2_ABI; }

/* which int8 dot-product implementation this build has: 2 VNNI, 1 AVX2, 0 portable C (same results) */
int lav2_int8_impl(void) { return I8_IMPL; }

typedef void (*rows_fn)(const uint8_t *, int64_t, int64_t, int64_t, const float *, int64_t, float *, int64_t);
static rows_fn rows_for(int type) {
    return type == T_Q4_0 ? rows_T_Q4_0 : type == T_Q4_1 ? rows_T_Q4_1 : type == T_Q8_0 ? rows_T_Q8_0
         : type == T_Q4_K ? rows_T_Q4_K : rows_T_Q6_K;
}

/* y (M x N) = x (M x K) @ W^T, W given as N rows of GGUF blocks; nt threads. 0 on success. */
int lav2_mm(int type, const uint8_t *w, int64_t N, int64_t K, const float *x, int64_t M, float *y, int nt,
            int act) {
    if (!block_bytes(type) || K % block_weights(type) || N < 0 || M < 0) return -1;
    if (act && I8_OK(type, K)) { /* int8 activations: quantise once, then every thread reads the same rows */
        float *buf = (float *)aligned_alloc(64, sizeof(float) * (size_t)qin_floats(M, K));
        if (!buf) return -2;
        qin_t xi;
        qin_init(&xi, buf, M, K);
        quantize_rows(type, x, M, K, &xi);
        const int threads = nt > 1 && N >= 64 ? nt : 1;
        #pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
        for (int t = 0; t < threads; t++) {
            const int64_t chunk = (N + threads - 1) / threads;
            const int64_t n0 = t * chunk < N ? t * chunk : N, n1 = n0 + chunk < N ? n0 + chunk : N;
            i8_rows(type, w, n0, n1, K, &xi, M, y, N);
        }
        free(buf);
        return 0;
    }
    const rows_fn rows = rows_for(type);
    /* one contiguous chunk of rows per thread: each thread streams its own part of W */
    const int threads = nt > 1 && N >= 64 ? nt : 1;
    #pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int t = 0; t < threads; t++) {
        const int64_t chunk = (N + threads - 1) / threads;
        const int64_t n0 = t * chunk < N ? t * chunk : N, n1 = n0 + chunk < N ? n0 + chunk : N;
        rows(w, n0, n1, K, x, M, y, N);
    }
    return 0;
}

/* out (N x K) = the float32 values of the blocks (equal to gguf-py's dequantize). */
int lav2_dequant(int type, const uint8_t *w, int64_t N, int64_t K, float *out, int nt) {
    if (!block_bytes(type) || K % block_weights(type) || N < 0) return -1;
    const int64_t rb = row_bytes(type, K);
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N >= 64)
    for (int64_t n = 0; n < N; n++) unpack_row(type, w + n * rb, K, out + n * K);
    return 0;
}

/* out (n x K) = rows ids[0..n) of W (an embedding lookup). -3 if an id is out of range. */
int lav2_rows(int type, const uint8_t *w, int64_t N, int64_t K, const int64_t *ids, int64_t n, float *out) {
    if (!block_bytes(type) || K % block_weights(type)) return -1;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= N) return -3;
    const int64_t rb = row_bytes(type, K);
    for (int64_t i = 0; i < n; i++) unpack_row(type, w + ids[i] * rb, K, out + i * K);
    return 0;
}

/* ==== one decode step of the whole decoder, in C (core_model/fastpath.py builds the plan and checks it covers
 * the model; the torch path stays the reference). Why: at batch 1 a SmolLM2 token is ~30 layers x ~20 small torch
 * ops; their dispatch cost more than the products themselves. Here a step is one call and one OpenMP parallel
 * region; stages are separated by barriers, products use the same row kernels as lav2_mm (identical values).
 *
 * Each batch row b has its own rotary position rpos[b], writes its key/value at cache position wpos[b] and
 * attends to cache positions kstart[b] .. wpos[b]; its cache rows start row_off[b] floats into every layer's
 * k/v buffer (head stride kv_hs, position stride kv_ps); its prompt keys/values are row prow[b] of the per-row
 * prompt buffers. Rows may share a cache row: a prompt prefilled as rows at consecutive positions (each row
 * sees the keys of the rows before it). Logits (or, without a head, normed states) come out for the last
 * n_logits rows only (1 for a prefill: the LM head is a fifth of a SmolLM2 row's work). */
typedef struct {
    const uint8_t *w; /* GGUF blocks, n rows; or n x k float32 for type T_F32 (a matrix the file keeps dense) */
    int32_t type;
    int32_t mode;     /* 0: W x; 1: W x + b; 2: s * (W x + b); 3: W (s * x) + b */
    int64_t n, k;
    const float *bias, *scale;
    int64_t act;      /* 1: int8 activations (Q4_0, Q4_1, Q8_0; other types ignore it) */
} lav2_lin;

typedef struct {
    const float *k, *v; /* prompt keys/values per head, no rotary: element (b, h, p, d) at */
    int64_t P;          /* b*row_stride + h*head_stride + p*pos_stride + d */
    int64_t row_stride, head_stride, pos_stride;
    const float *gate;  /* n_heads factors: tanh(gate) (times new_gate) */
} lav2_prompt;

typedef struct {
    lav2_lin wq, wk, wv, wo, w1, w2, w3;
    const float *attn_norm, *ffn_norm;
    float *kc, *vc;
    int64_t n_prompts;
    lav2_prompt prompts[2];
} lav2_layer;

typedef struct {
    int64_t dim, n_heads, n_kv_heads, head_dim, ffn_dim, n_layers, max_keys;
    float eps;
    const lav2_layer *layers;
    const float *norm;
    lav2_lin head;      /* w == NULL: the step returns the final normed hidden state instead of logits */
    const float *rope;  /* (positions, head_dim/2) of (cos, sin) */
    int64_t rope_len, kv_hs, kv_ps;
} lav2_model;

static void span(int64_t total, int t, int nt, int64_t *lo, int64_t *hi) {
    const int64_t chunk = (total + nt - 1) / nt;
    *lo = t * chunk < total ? t * chunk : total;
    *hi = *lo + chunk < total ? *lo + chunk : total;
}

static void rms_norm(const float *x, const float *w, int64_t M, int64_t K, float eps, float *y) {
    for (int64_t m = 0; m < M; m++) {
        float ss = 0.f;
        for (int64_t i = 0; i < K; i++) ss += x[m * K + i] * x[m * K + i];
        const float r = 1.f / sqrtf(ss / (float)K + eps);
        for (int64_t i = 0; i < K; i++) y[m * K + i] = x[m * K + i] * r * w[i];
    }
}

/* the input of a linear: x itself, or s * x for mode 3 (into buf); quantised into qi for int8 activations */
AI float dot(const float *a, const float *b, int64_t D) {
    int64_t i = 0;
    float s = 0.f;
    if (D % VL == 0) {
        vf acc = (vf){0};
        for (; i < D; i += VL) acc += loadv(a + i) * loadv(b + i);
        return hsum(acc);
    }
    for (; i < D; i++) s += a[i] * b[i];
    return s;
}

AI int lin_i8(const lav2_lin *L) { return L->act && I8_OK(L->type, L->k); }

static const float *lin_input(const lav2_lin *L, const float *x, int64_t M, float *buf, qin_t *qi) {
    const float *in = x;
    if (L->mode == 3) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t i = 0; i < L->k; i++) buf[m * L->k + i] = x[m * L->k + i] * L->scale[i];
        in = buf;
    }
    if (lin_i8(L)) quantize_rows(L->type, in, M, L->k, qi);
    return in;
}

/* whether b can use a's quantised input: both int8 on the same x (no input scale), same activation encoding */
AI int same_q(const lav2_lin *a, const lav2_lin *b) {
    return lin_i8(a) && lin_i8(b) && a->mode != 3 && b->mode != 3 && a->k == b->k
        && (!I8_BIAS || (a->type == T_Q4_1) == (b->type == T_Q4_1));
}

/* rows [n0, n1) of y (ldy apart) = the linear of x (M rows), bias and scale applied */
static void lin_rows(const lav2_lin *L, const float *x, const qin_t *qi, int64_t M, int64_t n0,
                     int64_t n1, float *y, int64_t ldy) {
    if (n0 >= n1) return;
    if (lin_i8(L)) i8_rows(L->type, L->w, n0, n1, L->k, qi, M, y, ldy);
    else if (L->type == T_F32) {
        const float *w = (const float *)L->w;
        for (int64_t n = n0; n < n1; n++)
            for (int64_t m = 0; m < M; m++) y[m * ldy + n] = dot(x + m * L->k, w + n * L->k, L->k);
    }
    else rows_for(L->type)(L->w, n0, n1, L->k, x, M, y, ldy);
    if (L->mode == 0) return;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = n0; n < n1; n++) {
            float v = y[m * ldy + n] + L->bias[n];
            y[m * ldy + n] = L->mode == 2 ? v * L->scale[n] : v;
        }
}

AI void axpy(float a, const float *x, float *y, int64_t D) { /* y += a * x */
    int64_t i = 0;
    if (D % VL == 0) {
        const vf av = (vf){0} + a;
        for (; i < D; i += VL) {
            vf t = loadv(y + i) + av * loadv(x + i);
            memcpy(y + i, &t, sizeof t);
        }
        return;
    }
    for (; i < D; i++) y[i] += a * x[i];
}

static void rope_apply(float *x, const float *cs, int64_t D) {
    for (int64_t i = 0; i < D / 2; i++) {
        const float a = x[2 * i], b = x[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}

/* e^x in every lane, within 2 ulp of expf for x in [-87.3, 88.3] (clamped to that range: 2^n stays a normal
 * float). Cephes' single-precision method: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, so r is exact to
 * float precision), e^r by a degree-6 polynomial, 2^n put into the exponent bits. Why: the SwiGLU and the
 * softmax called libm's scalar expf once per element (with a division each: ~5% of a batch-8 decode step). Each
 * lane is computed alone, so a row's values never depend on the batch or the thread split. */
AI vf vsel(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); } /* lanes: mask ? a : b */
AI vf vexp(vf x) {
    const vf hi = (vf){0} + 88.3762626647949f, lo = (vf){0} - 87.3365447505531f;
    x = vsel(x > hi, hi, x);
    x = vsel(x < lo, lo, x);
    const vf n = (x * 1.44269504088896341f + I8_MAGIC) - I8_MAGIC; /* round(x / ln2), ties to even */
    const vf r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    vf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.f;
    const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    vf two_n; memcpy(&two_n, &e, sizeof e);
    return p * two_n;
}

/* up to VL floats of a into a zero-padded vector, and back */
AI vf load_part(const float *a, int64_t n) { float t[VL] = {0}; memcpy(t, a, sizeof(float) * n); return loadv(t); }
AI void store_part(float *a, vf v, int64_t n) { memcpy(a, &v, sizeof(float) * n); }

/* softmax(q . keys / sqrt(D)) @ values over n keys (key j at k + j*ps), times factor, added to out */
static void attend(const float *q, const float *k, const float *v, int64_t n, int64_t ps, int64_t D, float factor,
                   float *sc, float *out) {
    if (n <= 0) return;
    const float scale = 1.f / sqrtf((float)D);
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        sc[j] = dot(q, k + j * ps, D) * scale;
        if (sc[j] > mx) mx = sc[j];
    }
    vf acc = (vf){0};
    int64_t j = 0;
    for (; j + VL <= n; j += VL) {
        const vf e = vexp(loadv(sc + j) - mx);
        memcpy(sc + j, &e, sizeof e);
        acc += e;
    }
    float sum = hsum(acc);
    if (j < n) {
        const vf e = vexp(load_part(sc + j, n - j) - mx);
        store_part(sc + j, e, n - j);
        for (; j < n; j++) sum += sc[j];
    }
    const float inv = factor / sum;
    for (int64_t j = 0; j < n; j++) axpy(sc[j] * inv, v + j * ps, out, D);
}

/* g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u for i < n */
static void silu_mul(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        const vf x = loadv(g + i), y = x / (1.f + vexp(-x)) * loadv(u + i);
        memcpy(g + i, &y, sizeof y);
    }
    if (i < n) {
        const vf x = load_part(g + i, n - i), y = x / (1.f + vexp(-x)) * load_part(u + i, n - i);
        store_part(g + i, y, n - i);
    }
}


/* The decode step's scratch, kept per calling thread and grown on demand: a fresh allocation per step of a
 * batch (a few MB with the LM head's logits) came back from the kernel as zeroed pages every time (measured ~4% of
 * a batch-8 decode in clear_page). One engine loop thread calls the step, so this is one buffer per engine. */
static __thread float *ws_buf;
static __thread size_t ws_len;
static pthread_key_t ws_key; /* its destructor frees the buffer when the thread ends */
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;
static void ws_free(void *p) { free(p); }
static void ws_init(void) { pthread_key_create(&ws_key, ws_free); }

static float *workspace(size_t n) {
    if (n <= ws_len) return ws_buf;
    pthread_once(&ws_once, ws_init);
    free(ws_buf);
    ws_buf = (float *)aligned_alloc(64, (size_t)ALIGNED(n) * sizeof(float));
    ws_len = ws_buf ? (size_t)ALIGNED(n) : 0;
    pthread_setspecific(ws_key, ws_buf);
    return ws_buf;
}

/* Row b's query heads that share kv head hk: rotate, attend to the row's cache keys kstart..wpos (its own new key
 * included) and to its prompt sets (row prow[b] of their per-row buffers), into att. */
static void attend_kv_head(const lav2_model *m, const lav2_layer *L, int64_t b, int64_t hk, int64_t rep,
                           const float *cs, const float *kd, const float *vd, float *q, float *att, int64_t qd,
                           const int64_t *wpos, const int64_t *kstart, const int64_t *prow, float *sc) {
    const int64_t D = m->head_dim;
    for (int64_t h = hk * rep; h < (hk + 1) * rep; h++) {
        float *qh = q + b * qd + h * D, *o = att + b * qd + h * D;
        rope_apply(qh, cs, D);
        memset(o, 0, sizeof(float) * D);
        attend(qh, kd + kstart[b] * m->kv_ps, vd + kstart[b] * m->kv_ps, wpos[b] - kstart[b] + 1, m->kv_ps, D, 1.f,
               sc, o);
        for (int64_t s = 0; s < L->n_prompts; s++) {
            const lav2_prompt *p = L->prompts + s;
            const int64_t off = prow[b] * p->row_stride + h * p->head_stride;
            attend(qh, p->k + off, p->v + off, p->P, p->pos_stride, D, p->gate[h], sc, o);
        }
    }
}

/* out[i] = e^x[i] (op 0) or silu(x[i]) (op 1) for i < n, with the decode step's own vector code (for the tests:
 * tests/core_model/test_quant.py compares them with torch over the whole float range). 0, or -1 for a bad op. */
int lav2_pointwise(int op, const float *x, int64_t n, float *out) {
    if (op != 0 && op != 1) return -1;
    float ones[VL];
    for (int i = 0; i < VL; i++) ones[i] = 1.f;
    for (int64_t i = 0; i < n; i += VL) {
        const int64_t c = n - i < VL ? n - i : VL;
        if (op == 0) store_part(out + i, vexp(load_part(x + i, c)), c);
        else { memcpy(out + i, x + i, sizeof(float) * c); silu_mul(out + i, ones, c); }
    }
    return 0;
}

int lav2_decode(const lav2_model *m, int64_t B, float *x, const int64_t *rpos, const int64_t *wpos,
                const int64_t *kstart, const int64_t *row_off, const int64_t *prow, int64_t n_logits, float *out,
                int nt) {
    const int64_t dim = m->dim, H = m->n_heads, Hkv = m->n_kv_heads, D = m->head_dim, F = m->ffn_dim;
    const int64_t qd = H * D, kvd = Hkv * D, rep = H / Hkv;
    if (B <= 0 || H % Hkv || D % 2 || n_logits < 1 || n_logits > B) return -1;
    int shared = 0; /* two rows write into the same cache row: keys stored before anyone attends (see below) */
    for (int64_t b = 0; b < B; b++) {
        if (rpos[b] < 0 || rpos[b] >= m->rope_len || wpos[b] < 0 || kstart[b] < 0 || kstart[b] > wpos[b]
            || wpos[b] >= m->max_keys || prow[b] < 0)
            return -4;
        for (int64_t c = 0; c < b && !shared; c++) shared = row_off[c] == row_off[b];
    }
    const int64_t wide = F > dim ? (F > qd ? F : qd) : (dim > qd ? dim : qd);
    const int64_t vocab = m->head.w ? m->head.n : 0;
    int64_t maxp = 0;
    for (int64_t l = 0; l < m->n_layers; l++)
        for (int64_t s = 0; s < m->layers[l].n_prompts; s++)
            if (m->layers[l].prompts[s].P > maxp) maxp = m->layers[l].prompts[s].P;
    const int threads = nt > 1 ? nt : 1;
    /* shared: q, k, v, attention output, gate, up, product output. Per thread: its own copy of the normed input,
     * the (input-scaled) inputs of up to three linears — every thread computes them itself
     * (a few thousand flops) instead of one thread computing and a barrier publishing them — plus attention
     * scores. Five barriers per layer. Every buffer starts on a 64-byte line (ALIGNED rounds sizes
     * to whole lines): vector loads of activations that straddle two lines cost twice. With the per-thread
     * workspace below, measured: batch-8 step 27.9 -> 19.5 ms, batch 4 14.6 -> 10.1 ms, batch 1 unchanged. */
    int any_i8 = m->head.w && lin_i8(&m->head); /* int8 activations: three quantised inputs per thread too */
    for (int64_t l = 0; l < m->n_layers && !any_i8; l++) {
        const lav2_layer *L = m->layers + l;
        any_i8 = lin_i8(&L->wq) || lin_i8(&L->wk) || lin_i8(&L->wv) || lin_i8(&L->wo) || lin_i8(&L->w1)
              || lin_i8(&L->w2) || lin_i8(&L->w3);
    }
    const int64_t qf = any_i8 ? qin_floats(B, wide) : 0;
    const int64_t per_thread = ALIGNED(B * dim) + 3 * ALIGNED(B * wide)
                             + ALIGNED(m->max_keys > maxp ? m->max_keys : maxp) + 3 * qf;
    const int64_t sq = ALIGNED(B * qd), skv = ALIGNED(B * kvd), sf = ALIGNED(B * F);
    float *ws = workspace((size_t)(2 * sq + 2 * skv + 2 * sf + ALIGNED(B * dim)) + (size_t)threads * per_thread);
    if (!ws) return -2;
    float *q = ws, *kk = q + sq, *vv = kk + skv, *att = vv + skv, *g = att + sq, *u = g + sf;
    float *tmp = u + sf, *thr = tmp + ALIGNED(B * dim); /* tmp: the wo and w2 outputs */

    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int t = 0, nth = 1;
#endif
        float *xn = thr + t * per_thread, *in3 = xn + ALIGNED(B * dim);
        float *sc = in3 + 3 * ALIGNED(B * wide);
        qin_t q3[3]; /* quantised inputs (int8 activations only), K set per linear */
        float *qb = sc + ALIGNED(m->max_keys > maxp ? m->max_keys : maxp);
        memset(q3, 0, sizeof q3);
#define QIN(i, L) (qin_init(&q3[i], qb + (i) * qf, B, (L)->k), &q3[i])
        const int64_t iw = ALIGNED(B * wide); /* the stride of the three linear inputs in in3 */
        const float *inq, *ink, *inv, *in_o, *in2;
        int64_t lo, hi;
        for (int64_t l = 0; l < m->n_layers; l++) {
            const lav2_layer *L = m->layers + l;
            rms_norm(x, L->attn_norm, B, dim, m->eps, xn);
            inq = lin_input(&L->wq, xn, B, in3, QIN(0, &L->wq));
            if (same_q(&L->wq, &L->wk)) { ink = inq; q3[1] = q3[0]; }
            else ink = lin_input(&L->wk, xn, B, in3 + iw, QIN(1, &L->wk));
            if (same_q(&L->wq, &L->wv)) { inv = inq; q3[2] = q3[0]; }
            else inv = lin_input(&L->wv, xn, B, in3 + 2 * iw, QIN(2, &L->wv));
            /* q, k and v rows as one range split over the threads */
            span(qd + 2 * kvd, t, nth, &lo, &hi);
            lin_rows(&L->wq, inq, q3, B, lo, hi < qd ? hi : qd, q, qd);
            lin_rows(&L->wk, ink, q3 + 1, B, lo - qd > 0 ? lo - qd : 0, hi - qd < kvd ? hi - qd : kvd, kk,
                     kvd);
            lin_rows(&L->wv, inv, q3 + 2, B, lo - qd - kvd > 0 ? lo - qd - kvd : 0,
                     hi - qd - kvd < kvd ? hi - qd - kvd : kvd, vv, kvd);
            #pragma omp barrier
            /* one task per (row, kv head): rotate and store its key/value, then attend for the query heads
             * that share it. When rows share a cache row (the prompt of one request, prefilled as rows at
             * consecutive positions) every key is stored before any row attends, so a row sees the keys of the
             * rows before it whichever thread wrote them. */
            span(B * Hkv, t, nth, &lo, &hi);
            for (int pass = shared ? 0 : 2; pass < (shared ? 2 : 3); pass++) {
                if (pass == 1) {
                    #pragma omp barrier
                }
                for (int64_t task = lo; task < hi; task++) {
                    const int64_t b = task / Hkv, hk = task % Hkv;
                    const float *cs = m->rope + rpos[b] * D;
                    float *kd = L->kc + row_off[b] + hk * m->kv_hs, *vd = L->vc + row_off[b] + hk * m->kv_hs;
                    if (pass != 1) { /* 0: store only, 2: store and attend */
                        float *kn = kk + b * kvd + hk * D;
                        rope_apply(kn, cs, D);
                        memcpy(kd + wpos[b] * m->kv_ps, kn, sizeof(float) * D);
                        memcpy(vd + wpos[b] * m->kv_ps, vv + b * kvd + hk * D, sizeof(float) * D);
                    }
                    if (pass == 0) continue;
                    attend_kv_head(m, L, b, hk, rep, cs, kd, vd, q, att, qd, wpos, kstart, prow, sc);
                }
            }
            #pragma omp barrier
            in_o = lin_input(&L->wo, att, B, in3, QIN(0, &L->wo));
            span(dim, t, nth, &lo, &hi);
            lin_rows(&L->wo, in_o, q3, B, lo, hi, tmp, dim);
            for (int64_t b = 0; b < B; b++)
                for (int64_t n = lo; n < hi; n++) x[b * dim + n] += tmp[b * dim + n];
            #pragma omp barrier
            rms_norm(x, L->ffn_norm, B, dim, m->eps, xn);
            inq = lin_input(&L->w1, xn, B, in3, QIN(0, &L->w1));
            if (same_q(&L->w1, &L->w3)) { ink = inq; q3[1] = q3[0]; }
            else ink = lin_input(&L->w3, xn, B, in3 + iw, QIN(1, &L->w3));
            /* gate and up rows of the same range, then silu(gate) * up for them: no barrier in between */
            span(F, t, nth, &lo, &hi);
            lin_rows(&L->w1, inq, q3, B, lo, hi, g, F);
            lin_rows(&L->w3, ink, q3 + 1, B, lo, hi, u, F);
            for (int64_t b = 0; b < B; b++) silu_mul(g + b * F + lo, u + b * F + lo, hi - lo);
            #pragma omp barrier
            in2 = lin_input(&L->w2, g, B, in3, QIN(0, &L->w2));
            span(dim, t, nth, &lo, &hi);
            lin_rows(&L->w2, in2, q3, B, lo, hi, tmp, dim);
            for (int64_t b = 0; b < B; b++)
                for (int64_t n = lo; n < hi; n++) x[b * dim + n] += tmp[b * dim + n];
            #pragma omp barrier
        }
        const float *xl = x + (B - n_logits) * dim; /* the rows whose logits are wanted: the last n_logits */
        if (m->head.w) {
            rms_norm(xl, m->norm, n_logits, dim, m->eps, xn);
            qin_init(&q3[0], qb, n_logits, m->head.k);
            in_o = lin_input(&m->head, xn, n_logits, in3, &q3[0]);
            span(vocab, t, nth, &lo, &hi);
            lin_rows(&m->head, in_o, q3, n_logits, lo, hi, out, vocab);
        } else {
            #pragma omp single
            rms_norm(xl, m->norm, n_logits, dim, m->eps, out);
        }
    }
    return 0;
}
