/* Matrix products straight from GGUF quantised blocks (Q4_0, Q4_1, Q8_0), float32 activations.
 *
 * Why: decode at batch 1 streams every weight once per token. Dequantised to float32, SmolLM2-135M is 540 MB
 * per token and DRAM-bound; kept in the GGUF's own blocks it is about 100 MB. The values are exactly the GGUF's
 * (w = d*q + m per 32 weights, d and m float16); only the summation order differs from a float32 BLAS product,
 * and the activations are never quantised (unlike llama.cpp's Q8 dot products).
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

#define LAV2_ABI 2
#define QK 32
#define MB 4              /* activation rows per pass over a weight row in the few-rows kernel (8 measured slower) */
#define GEMM_FROM_ROWS 16 /* from this many activation rows on, unpack weight rows once and reuse them */
#define PREFETCH_BYTES 4096 /* how far ahead of its reads the row kernel prefetches the weight stream */

enum { T_F32 = 0, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_Q4_K = 12, T_Q6_K = 14 }; /* GGML type ids */

#if defined(__AVX512F__)
#define VL 16
#define MR 4 /* 32 zmm registers: 16 accumulators + 4 weight vectors + 1 activation vector */
#elif defined(__AVX__)
#define VL 8
#define MR 2 /* 16 ymm registers: 8 accumulators + 4 weight vectors + 1 activation vector */
#else
#define VL 4
#define MR 4
#endif
#define NR 4          /* weight rows per micro-kernel tile */
#define NV (QK / VL)  /* vectors per block */

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
AI float hsum(vf v) { /* pairwise: log2(VL) dependent adds */
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

/* One row of K weights as float32 into out. With exact != 0 the offset is added behind a call boundary, so the
 * compiler cannot fuse d*q + m into one multiply-add and the values round exactly like the reference (gguf-py:
 * (d*q) + m); the products do not need that and take the inlined, possibly fused, form. */
static __attribute__((noinline)) void unpack_call(int type, const uint8_t *row, int64_t g, vf out[NV], float *m) {
    unpack(type, row, g, out, m);
}

AI void unpack_row(int type, const uint8_t *row, int64_t K, float *out, const int exact) {
    for (int64_t g = 0; g < K / QK; g++) {
        vf w[NV]; float mn;
        if (exact)
            unpack_call(type, row, g, w, &mn);
        else
            unpack(type, row, g, w, &mn);
        for (int v = 0; v < NV; v++) {
            const vf t = w[v] + mn;
            memcpy(out + g * QK + v * VL, &t, sizeof t);
        }
    }
}

/* Sub-block g before its scale: w[v*VL + i] = q[v][i] * sc[v] + *m. The decode kernel multiplies the scale once
 * per dot product of a sub-block instead of once per weight vector (measured ~1.4x on the AVX-512 row kernel). */
AI void unpack_raw(int type, const uint8_t *row, int64_t g, vf q[NV], float sc[NV], float *m) {
    if (type == T_Q4_K) {
        const uint8_t *b = row + (g >> 3) * 144, *s6 = b + 4;
        const int j = (int)(g & 7);
        int s, mn;
        if (j < 4) {
            s = s6[j] & 63; mn = s6[j + 4] & 63;
        } else {
            s = (s6[j + 4] & 15) | ((s6[j - 4] >> 6) << 4); mn = (s6[j + 4] >> 4) | ((s6[j] >> 6) << 4);
        }
        const float d = h2f(b) * (float)s;
        for (int v = 0; v < NV; v++) { q[v] = TOF(load_bits(b + 16 + (j >> 1) * 32 + v * VL, (j & 1) * 4, 15)); sc[v] = d; }
        *m = -(h2f(b + 2) * (float)mn);
        return;
    }
    if (type == T_Q6_K) {
        const uint8_t *b = row + (g >> 3) * 210;
        const int j = (int)(g & 7), h = j >> 2, l = j & 3;
        const float d = h2f(b + 208);
        const int8_t *s8 = (const int8_t *)(b + 192) + 2 * j;
        for (int v = 0; v < NV; v++) {
            const vu8 lo = load_bits(b + 64 * h + (l & 1) * 32 + v * VL, (l >> 1) * 4, 15);
            const vu8 hi = load_bits(b + 128 + 32 * h + v * VL, 2 * l, 3);
            q[v] = TOF(lo | shl4(hi)) - 32.f;
            sc[v] = d * (float)s8[v * VL / 16];
        }
        *m = 0.f;
        return;
    }
    const uint8_t *b = row + g * block_bytes(type);
    const float d = h2f(b);
    for (int v = 0; v < NV; v++) sc[v] = d;
    if (type == T_Q8_0) {
        for (int v = 0; v < NV; v++) {
            vu8 u; memcpy(&u, b + 2 + v * VL, VL);
            u ^= 0x80; /* see unpack() */
            q[v] = TOF(u) - 128.f;
        }
        *m = 0.f;
        return;
    }
    const uint8_t *qs = b + (type == T_Q4_1 ? 4 : 2);
    for (int v = 0; v < NV; v++) {
        const vu8 u = load_bits(qs + (v % (NV / 2)) * VL, v < NV / 2 ? 0 : 4, 15);
        q[v] = type == T_Q4_0 ? TOF(u) - 8.f : TOF(u);
    }
    *m = type == T_Q4_1 ? h2f(b + 2) : 0.f;
}

/* ---- few activation rows (decode): unpack each block once for up to MB rows, straight from memory.
 * One weight row x M activation rows: y[m*ldy] = sum_k x[m*K + k] * W[k]. Per sub-block the unscaled dot product
 * is formed first and scaled once; even and odd sub-blocks feed two independent accumulator chains per row. The
 * offset term m_g * sum(x over block g) (Q4_1, Q4_K) uses the precomputed block sums xs[m*G + g]. (Tiles of 2-4
 * weight rows sharing the activation loads were measured slower: 4.6 vs 3.2 ms per SmolLM2 token.) */
AI void block_dot(int type, const uint8_t *row, int64_t g, const float *x, int64_t K, const float *xs, int64_t G,
                  const int M, vf acc[MB], float off[MB]) {
    vf q[NV]; float sc[NV], mn;
    unpack_raw(type, row, g, q, sc, &mn);
    for (int m = 0; m < M; m++) {
        const float *xm = x + m * K + g * QK;
        if (type == T_Q6_K && VL < 16) { /* one scale per 16 weights: NV/2 vectors share each */
            vf t0 = q[0] * loadv(xm), t1 = q[NV / 2] * loadv(xm + (NV / 2) * VL);
            for (int v = 1; v < NV / 2; v++) {
                t0 += q[v] * loadv(xm + v * VL);
                t1 += q[NV / 2 + v] * loadv(xm + (NV / 2 + v) * VL);
            }
            acc[m] += t0 * sc[0] + t1 * sc[NV / 2];
        } else if (type == T_Q6_K) { /* VL 16: one scale per vector */
            acc[m] += q[0] * loadv(xm) * sc[0] + q[1] * loadv(xm + VL) * sc[1];
        } else {
            vf t = q[0] * loadv(xm);
            for (int v = 1; v < NV; v++) t += q[v] * loadv(xm + v * VL);
            acc[m] += t * sc[0];
        }
        if (type == T_Q4_1 || type == T_Q4_K) off[m] += mn * xs[m * G + g];
    }
}

AI void row_dot(int type, const uint8_t *row, int64_t G, const float *x, int64_t K, const float *xs, const int M,
                float *y, int64_t ldy) {
    vf a0[MB], a1[MB];
    float o0[MB], o1[MB];
    for (int m = 0; m < M; m++) { a0[m] = (vf){0}; a1[m] = (vf){0}; o0[m] = 0.f; o1[m] = 0.f; }
    int64_t g = 0;
    const int64_t sub_bytes = block_bytes(type) / (block_weights(type) / QK); /* bytes per 32 weights */
    for (; g + 1 < G; g += 2) {
        /* the hardware prefetcher stops at 4 KiB pages; a software prefetch this far ahead keeps the stream of
         * rows flowing (measured 23 -> 13 ms per SmolLM2 token, one thread, the row kernel) */
        __builtin_prefetch(row + PREFETCH_BYTES + g * sub_bytes);
        block_dot(type, row, g, x, K, xs, G, M, a0, o0);
        block_dot(type, row, g + 1, x, K, xs, G, M, a1, o1);
    }
    if (g < G) block_dot(type, row, g, x, K, xs, G, M, a0, o0);
    for (int m = 0; m < M; m++) y[m * ldy] = hsum(a0[m] + a1[m]) + (o0[m] + o1[m]);
}

/* Rows [n0, n1) for all M activation rows, MB at a time (the weight row stays in L1 between passes). */
AI void rows_range(int type, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const float *x, int64_t M,
                   const float *xs, float *y, int64_t N) {
    const int64_t G = K / QK, rb = row_bytes(type, K);
    for (int64_t n = n0; n < n1; n++)
        for (int64_t m0 = 0; m0 < M; m0 += MB) {
            const float *xm = x + m0 * K, *xsm = xs + m0 * G;
            float *yn = y + m0 * N + n;
            switch (M - m0 < MB ? M - m0 : MB) {
            case 1: row_dot(type, w + n * rb, G, xm, K, xsm, 1, yn, N); break;
            case 2: row_dot(type, w + n * rb, G, xm, K, xsm, 2, yn, N); break;
            case 3: row_dot(type, w + n * rb, G, xm, K, xsm, 3, yn, N); break;
            default: row_dot(type, w + n * rb, G, xm, K, xsm, 4, yn, N); break;
            }
        }
}

/* one copy per block type, so the type branches in unpack() and row_dot() fold away */
#define ROWS_RANGE(T)                                                                                      \
    static void rows_##T(const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const float *x, int64_t M,   \
                         const float *xs, float *y, int64_t N) {                                           \
        rows_range(T, w, n0, n1, K, x, M, xs, y, N);                                                       \
    }
ROWS_RANGE(T_Q4_0)
ROWS_RANGE(T_Q4_1)
ROWS_RANGE(T_Q8_0)
ROWS_RANGE(T_Q4_K)
ROWS_RANGE(T_Q6_K)

/* ---- many activation rows (prefill): unpack NR weight rows into a small buffer, then a register-blocked
 * MR x NR micro-kernel of dot products over K. Unpacking a block once per few activation rows costs as much as
 * the products themselves once M is large; this reuses each unpacked row for all M rows. */

/* y[m*ldy + r] = dot(x[m*K ..], wb[r*K ..]) for m < mr, r < nr (at most MR, NR) */
AI void micro(const float *x, const float *wb, int64_t K, const int mr, const int nr, float *y, int64_t ldy) {
    vf acc[MR][NR];
    for (int m = 0; m < mr; m++)
        for (int r = 0; r < nr; r++) acc[m][r] = (vf){0};
    for (int64_t k = 0; k < K; k += VL) {
        vf w[NR];
        for (int r = 0; r < nr; r++) w[r] = loadv(wb + r * K + k);
        for (int m = 0; m < mr; m++) {
            const vf xv = loadv(x + m * K + k);
            for (int r = 0; r < nr; r++) acc[m][r] += xv * w[r];
        }
    }
    for (int m = 0; m < mr; m++)
        for (int r = 0; r < nr; r++) y[m * ldy + r] = hsum(acc[m][r]);
}

static void micro_any(const float *x, const float *wb, int64_t K, int mr, int nr, float *y, int64_t ldy) {
    if (mr == MR && nr == NR) { micro(x, wb, K, MR, NR, y, ldy); return; }
    for (int m = 0; m < mr; m++) /* edges: one activation row at a time */
        switch (nr) {
        case 1: micro(x + m * K, wb, K, 1, 1, y + m * ldy, ldy); break;
        case 2: micro(x + m * K, wb, K, 1, 2, y + m * ldy, ldy); break;
        case 3: micro(x + m * K, wb, K, 1, 3, y + m * ldy, ldy); break;
        default: micro(x + m * K, wb, K, 1, 4, y + m * ldy, ldy); break;
        }
}

/* rows [n0, n1) of y = x @ W^T for any M; wb: NR*K floats of scratch */
static void gemm_range(int type, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const float *x, int64_t M,
                       float *y, int64_t N, float *wb) {
    const int64_t rb = row_bytes(type, K);
    for (int64_t n = n0; n < n1; n += NR) {
        const int nr = n1 - n < NR ? (int)(n1 - n) : NR;
        for (int r = 0; r < nr; r++) unpack_row(type, w + (n + r) * rb, K, wb + r * K, 0);
        for (int64_t m = 0; m < M; m += MR)
            micro_any(x + m * K, wb, K, M - m < MR ? (int)(M - m) : MR, nr, y + m * N + n, N);
    }
}

/* ---- entry points (called through ctypes; the Python side validates shapes and dtypes) */
int lav2_abi_version(void) { return LAV2_ABI; }

/* y (M x N) = x (M x K) @ W^T, W given as N rows of GGUF blocks; nt threads. 0 on success. */
int lav2_mm(int type, const uint8_t *w, int64_t N, int64_t K, const float *x, int64_t M, float *y, int nt) {
    if (!block_bytes(type) || K % block_weights(type) || N < 0 || M < 0) return -1;
    const int64_t G = K / QK;
    const int gemm = M >= GEMM_FROM_ROWS;
    float *xs = NULL;
    if (!gemm) {
        xs = (float *)malloc(sizeof(float) * (size_t)(M * G + 1));
        if (!xs) return -2;
        for (int64_t m = 0; m < M; m++)
            for (int64_t g = 0; g < G; g++) {
                float s = 0.f;
                for (int j = 0; j < QK; j++) s += x[m * K + g * QK + j];
                xs[m * G + g] = s;
            }
    }
    void (*rows)(const uint8_t *, int64_t, int64_t, int64_t, const float *, int64_t, const float *, float *,
                 int64_t) = type == T_Q4_0 ? rows_T_Q4_0 : type == T_Q4_1 ? rows_T_Q4_1 : type == T_Q8_0 ? rows_T_Q8_0
                           : type == T_Q4_K ? rows_T_Q4_K : rows_T_Q6_K;
    int failed = 0;
    /* one contiguous chunk of rows per thread: each thread streams its own part of W */
    const int threads = nt > 1 && N >= 64 ? nt : 1;
    #pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1) reduction(|:failed)
    for (int t = 0; t < threads; t++) {
        const int64_t chunk = (N + threads - 1) / threads;
        const int64_t n0 = t * chunk < N ? t * chunk : N, n1 = n0 + chunk < N ? n0 + chunk : N;
        if (!gemm) {
            rows(w, n0, n1, K, x, M, xs, y, N);
            continue;
        }
        float *wb = (float *)malloc(sizeof(float) * (size_t)(NR * K));
        if (!wb) { failed = 1; continue; }
        gemm_range(type, w, n0, n1, K, x, M, y, N, wb);
        free(wb);
    }
    free(xs);
    return failed ? -2 : 0;
}

/* out (N x K) = the float32 values of the blocks (equal to gguf-py's dequantize). */
int lav2_dequant(int type, const uint8_t *w, int64_t N, int64_t K, float *out, int nt) {
    if (!block_bytes(type) || K % block_weights(type) || N < 0) return -1;
    const int64_t rb = row_bytes(type, K);
    #pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1 && N >= 64)
    for (int64_t n = 0; n < N; n++) unpack_row(type, w + n * rb, K, out + n * K, 1);
    return 0;
}

/* out (n x K) = rows ids[0..n) of W (an embedding lookup). -3 if an id is out of range. */
int lav2_rows(int type, const uint8_t *w, int64_t N, int64_t K, const int64_t *ids, int64_t n, float *out) {
    if (!block_bytes(type) || K % block_weights(type)) return -1;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= N) return -3;
    const int64_t rb = row_bytes(type, K);
    for (int64_t i = 0; i < n; i++) unpack_row(type, w + ids[i] * rb, K, out + i * K, 1);
    return 0;
}

/* ==== one decode step of the whole decoder, in C (core_model/fastpath.py builds the plan and checks it covers
 * the model; the torch path stays the reference). Why: at batch 1 a SmolLM2 token is ~30 layers x ~20 small torch
 * ops; their dispatch cost more than the products themselves. Here a step is one call and one OpenMP parallel
 * region; stages are separated by barriers, products use the same row kernels as lav2_mm (identical values).
 *
 * Each batch row b has its own rotary position rpos[b], writes its key/value at cache position wpos[b] and
 * attends to cache positions kstart[b] .. wpos[b]; its cache rows start row_off[b] floats into every layer's
 * k/v buffer (head stride kv_hs, position stride kv_ps). */
typedef struct {
    const uint8_t *w; /* GGUF blocks, n rows; or n x k float32 for type T_F32 (a matrix the file keeps dense) */
    int32_t type;
    int32_t mode;     /* 0: W x; 1: W x + b; 2: s * (W x + b); 3: W (s * x) + b */
    int64_t n, k;
    const float *bias, *scale;
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

typedef void (*rows_fn)(const uint8_t *, int64_t, int64_t, int64_t, const float *, int64_t, const float *, float *,
                        int64_t);
static rows_fn rows_for(int type) {
    return type == T_Q4_0 ? rows_T_Q4_0 : type == T_Q4_1 ? rows_T_Q4_1 : type == T_Q8_0 ? rows_T_Q8_0
         : type == T_Q4_K ? rows_T_Q4_K : rows_T_Q6_K;
}

static void span(int64_t total, int t, int nt, int64_t *lo, int64_t *hi) {
    const int64_t chunk = (total + nt - 1) / nt;
    *lo = t * chunk < total ? t * chunk : total;
    *hi = *lo + chunk < total ? *lo + chunk : total;
}

static void block_sums(const float *x, int64_t M, int64_t K, float *xs) {
    const int64_t G = K / QK;
    for (int64_t m = 0; m < M; m++)
        for (int64_t g = 0; g < G; g++) {
            float s = 0.f;
            for (int j = 0; j < QK; j++) s += x[m * K + g * QK + j];
            xs[m * G + g] = s;
        }
}

static void rms_norm(const float *x, const float *w, int64_t M, int64_t K, float eps, float *y) {
    for (int64_t m = 0; m < M; m++) {
        float ss = 0.f;
        for (int64_t i = 0; i < K; i++) ss += x[m * K + i] * x[m * K + i];
        const float r = 1.f / sqrtf(ss / (float)K + eps);
        for (int64_t i = 0; i < K; i++) y[m * K + i] = x[m * K + i] * r * w[i];
    }
}

/* the input of a linear: x itself, or s * x for mode 3 (into buf); xs: its block sums */
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

static const float *lin_input(const lav2_lin *L, const float *x, int64_t M, float *buf, float *xs) {
    const float *in = x;
    if (L->mode == 3) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t i = 0; i < L->k; i++) buf[m * L->k + i] = x[m * L->k + i] * L->scale[i];
        in = buf;
    }
    if (M < GEMM_FROM_ROWS && L->type != T_F32) block_sums(in, M, L->k, xs);
    return in;
}

/* rows [n0, n1) of y (ldy apart) = the linear of x (M rows), bias and scale applied */
static void lin_rows(const lav2_lin *L, const float *x, const float *xs, int64_t M, int64_t n0, int64_t n1,
                     float *y, int64_t ldy, float *wb) {
    if (n0 >= n1) return;
    if (L->type == T_F32) {
        const float *w = (const float *)L->w;
        for (int64_t n = n0; n < n1; n++)
            for (int64_t m = 0; m < M; m++) y[m * ldy + n] = dot(x + m * L->k, w + n * L->k, L->k);
    } else if (M >= GEMM_FROM_ROWS) gemm_range(L->type, L->w, n0, n1, L->k, x, M, y, ldy, wb);
    else rows_for(L->type)(L->w, n0, n1, L->k, x, M, xs, y, ldy);
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
    float sum = 0.f;
    for (int64_t j = 0; j < n; j++) { sc[j] = expf(sc[j] - mx); sum += sc[j]; }
    const float inv = factor / sum;
    for (int64_t j = 0; j < n; j++) axpy(sc[j] * inv, v + j * ps, out, D);
}

AI float silu(float x) { return x / (1.f + expf(-x)); }

#define ALIGNED(n) (((int64_t)(n) + 15) & ~(int64_t)15) /* floats, rounded up to whole 64-byte lines */

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

int lav2_decode(const lav2_model *m, int64_t B, float *x, const int64_t *rpos, const int64_t *wpos,
                const int64_t *kstart, const int64_t *row_off, float *out, int nt) {
    const int64_t dim = m->dim, H = m->n_heads, Hkv = m->n_kv_heads, D = m->head_dim, F = m->ffn_dim;
    const int64_t qd = H * D, kvd = Hkv * D, rep = H / Hkv;
    if (B <= 0 || H % Hkv || D % 2) return -1;
    for (int64_t b = 0; b < B; b++)
        if (rpos[b] < 0 || rpos[b] >= m->rope_len || wpos[b] < 0 || kstart[b] < 0 || kstart[b] > wpos[b]
            || wpos[b] >= m->max_keys)
            return -4;
    const int64_t wide = F > dim ? (F > qd ? F : qd) : (dim > qd ? dim : qd);
    const int64_t vocab = m->head.w ? m->head.n : 0;
    const int64_t kmax = wide > vocab ? wide : vocab;
    int64_t maxp = 0;
    for (int64_t l = 0; l < m->n_layers; l++)
        for (int64_t s = 0; s < m->layers[l].n_prompts; s++)
            if (m->layers[l].prompts[s].P > maxp) maxp = m->layers[l].prompts[s].P;
    const int threads = nt > 1 ? nt : 1;
    /* shared: q, k, v, attention output, gate, up, product output. Per thread: its own copy of the normed input,
     * the (input-scaled) inputs of up to three linears and their block sums — every thread computes them itself
     * (a few thousand flops) instead of one thread computing and a barrier publishing them — plus a prefill tile
     * and attention scores. Five barriers per layer. Every buffer starts on a 64-byte line (ALIGNED rounds sizes
     * to whole lines): vector loads of activations that straddle two lines cost twice. With the per-thread
     * workspace below, measured: batch-8 step 27.9 -> 19.5 ms, batch 4 14.6 -> 10.1 ms, batch 1 unchanged. */
    const int64_t xsw = ALIGNED(B * (wide / QK + 1));
    const int64_t per_thread = ALIGNED(B * dim) + 3 * ALIGNED(B * wide) + 3 * xsw + ALIGNED(NR * wide)
                             + ALIGNED(m->max_keys > maxp ? m->max_keys : maxp);
    const int64_t sq = ALIGNED(B * qd), skv = ALIGNED(B * kvd), sf = ALIGNED(B * F);
    float *ws = workspace((size_t)(2 * sq + 2 * skv + 2 * sf + ALIGNED(B * kmax)) + (size_t)threads * per_thread);
    if (!ws) return -2;
    float *q = ws, *kk = q + sq, *vv = kk + skv, *att = vv + skv, *g = att + sq, *u = g + sf;
    float *tmp = u + sf, *thr = tmp + ALIGNED(B * kmax);

    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int t = 0, nth = 1;
#endif
        float *xn = thr + t * per_thread, *in3 = xn + ALIGNED(B * dim), *xs3 = in3 + 3 * ALIGNED(B * wide);
        float *wb = xs3 + 3 * xsw, *sc = wb + ALIGNED(NR * wide);
        const int64_t iw = ALIGNED(B * wide); /* the stride of the three linear inputs in in3 */
        const float *inq, *ink, *inv, *in_o, *in2;
        int64_t lo, hi;
        for (int64_t l = 0; l < m->n_layers; l++) {
            const lav2_layer *L = m->layers + l;
            rms_norm(x, L->attn_norm, B, dim, m->eps, xn);
            inq = lin_input(&L->wq, xn, B, in3, xs3);
            ink = lin_input(&L->wk, xn, B, in3 + iw, xs3 + xsw);
            inv = lin_input(&L->wv, xn, B, in3 + 2 * iw, xs3 + 2 * xsw);
            /* q, k and v rows as one range split over the threads */
            span(qd + 2 * kvd, t, nth, &lo, &hi);
            lin_rows(&L->wq, inq, xs3, B, lo, hi < qd ? hi : qd, q, qd, wb);
            lin_rows(&L->wk, ink, xs3 + xsw, B, lo - qd > 0 ? lo - qd : 0, hi - qd < kvd ? hi - qd : kvd, kk, kvd, wb);
            lin_rows(&L->wv, inv, xs3 + 2 * xsw, B, lo - qd - kvd > 0 ? lo - qd - kvd : 0,
                     hi - qd - kvd < kvd ? hi - qd - kvd : kvd, vv, kvd, wb);
            #pragma omp barrier
            /* one task per (row, kv head): rotate and store its key/value, then attend for the query heads
             * that share it */
            span(B * Hkv, t, nth, &lo, &hi);
            for (int64_t task = lo; task < hi; task++) {
                const int64_t b = task / Hkv, hk = task % Hkv;
                const float *cs = m->rope + rpos[b] * D;
                float *kd = L->kc + row_off[b] + hk * m->kv_hs, *vd = L->vc + row_off[b] + hk * m->kv_hs;
                float *kn = kk + b * kvd + hk * D;
                rope_apply(kn, cs, D);
                memcpy(kd + wpos[b] * m->kv_ps, kn, sizeof(float) * D);
                memcpy(vd + wpos[b] * m->kv_ps, vv + b * kvd + hk * D, sizeof(float) * D);
                for (int64_t h = hk * rep; h < (hk + 1) * rep; h++) {
                    float *qh = q + b * qd + h * D, *o = att + b * qd + h * D;
                    rope_apply(qh, cs, D);
                    memset(o, 0, sizeof(float) * D);
                    attend(qh, kd + kstart[b] * m->kv_ps, vd + kstart[b] * m->kv_ps, wpos[b] - kstart[b] + 1,
                           m->kv_ps, D, 1.f, sc, o);
                    for (int64_t s = 0; s < L->n_prompts; s++) {
                        const lav2_prompt *p = L->prompts + s;
                        const int64_t off = b * p->row_stride + h * p->head_stride;
                        attend(qh, p->k + off, p->v + off, p->P, p->pos_stride, D, p->gate[h], sc, o);
                    }
                }
            }
            #pragma omp barrier
            in_o = lin_input(&L->wo, att, B, in3, xs3);
            span(dim, t, nth, &lo, &hi);
            lin_rows(&L->wo, in_o, xs3, B, lo, hi, tmp, dim, wb);
            for (int64_t b = 0; b < B; b++)
                for (int64_t n = lo; n < hi; n++) x[b * dim + n] += tmp[b * dim + n];
            #pragma omp barrier
            rms_norm(x, L->ffn_norm, B, dim, m->eps, xn);
            inq = lin_input(&L->w1, xn, B, in3, xs3);
            ink = lin_input(&L->w3, xn, B, in3 + iw, xs3 + xsw);
            /* gate and up rows of the same range, then silu(gate) * up for them: no barrier in between */
            span(F, t, nth, &lo, &hi);
            lin_rows(&L->w1, inq, xs3, B, lo, hi, g, F, wb);
            lin_rows(&L->w3, ink, xs3 + xsw, B, lo, hi, u, F, wb);
            for (int64_t b = 0; b < B; b++)
                for (int64_t n = lo; n < hi; n++) g[b * F + n] = silu(g[b * F + n]) * u[b * F + n];
            #pragma omp barrier
            in2 = lin_input(&L->w2, g, B, in3, xs3);
            span(dim, t, nth, &lo, &hi);
            lin_rows(&L->w2, in2, xs3, B, lo, hi, tmp, dim, wb);
            for (int64_t b = 0; b < B; b++)
                for (int64_t n = lo; n < hi; n++) x[b * dim + n] += tmp[b * dim + n];
            #pragma omp barrier
        }
        if (m->head.w) {
            rms_norm(x, m->norm, B, dim, m->eps, xn);
            in_o = lin_input(&m->head, xn, B, in3, xs3);
            span(vocab, t, nth, &lo, &hi);
            lin_rows(&m->head, in_o, xs3, B, lo, hi, out, vocab, wb);
        } else {
            #pragma omp single
            rms_norm(x, m->norm, B, dim, m->eps, out);
        }
    }
    return 0;
}
