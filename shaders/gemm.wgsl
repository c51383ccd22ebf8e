// The register-tiled GEMMs over packed weights: one source, five kernels (build.rs's KERNELS),
// which differ only in how they read the input pixels of the GEMM:
//
//   Y[n, co, p] = epilogue(sum_k W[co, k] * X'[n, k, p])
//
// - no define (conv1x1_reg.wgsl): 1x1 convolution with stride, any shape; X'[n, ci, p] =
//   X[n, ci, src(p)], src(i, j) = (i*s, j*s), pixels read one by one.
// - VEC4 (conv1x1_vec4.wgsl): 1x1 convolution, stride 1, H*W divisible by 4: pixels read and
//   written as vec4s. The fast variant for CPU-like adapters (lavapipe), where every load whose
//   address varies across invocations costs a loop over the SIMD lanes whatever its width (so
//   one vec4 load costs about what a scalar load does).
// - SHIFTED (asl_conv1x1.wgsl): the Active Shift Layer fused into the following 1x1 convolution
//   (docs/design.md §2), so the shifted tensor never exists in memory:
//     X'[n, c, i, j] = bilinear sample of x[n, c] at row i*s + ypos[c], column j*s + xpos[c],
//                      each of the four taps reading 0 outside the image (asl_forward.wgsl).
//   Each channel's taps (integer offsets and fractions) come precomputed by asl_taps.wgsl; a
//   channel whose shift is NaN gets offsets far outside every image, so it contributes 0.
// - SHIFTED and VEC4 (asl_conv1x1_vec4.wgsl): the same, stride 1 and W divisible by 4, with x,
//   residual and y as vec4s. Each invocation owns 4 adjacent output pixels of one row, j0 ..
//   j0+3 with j0 a multiple of 4; a channel's shifted row segment needs input columns j0 + fx ..
//   j0 + fx + 4, which lie in two aligned vec4s of the input row, so each input channel costs 4
//   vec4 loads (2 rows x 2 blocks) instead of 16 scalar ones. SwiftShader (Chromium's software
//   WebGPU) spends minutes compiling this four-channel loop body, until Chromium kills its GPU
//   process: src/gpu/kernels/asl_conv1x1.rs runs asl_conv1x1.wgsl there instead.
// - IM2COL (conv3x3_gemm.wgsl): 3x3 convolution, padding 1, any stride, no bias (the stem of
//   the networks), with K = 9 * Cin: column k = 9 * ci + 3 * ky + kx reads
//   x[n, ci, i*s + ky - 1, j*s + kx - 1] (0 outside the image). The weight [Cout, Cin, 3, 3] is
//   the [Cout, 9 * Cin] matrix; no epilogue is used.
//
// Each invocation owns 4 consecutive output pixels and a block of output channels: 32 for the
// entry points `main` and `main_whole`, 64 for `main_wide` and `main_wide_whole` (used only where
// KernelPolicy::wide_gemm says, off by default: they compile 3-5 times as slowly; for layers
// with at least 64 output channels: more multiply-adds per pixel load), a define of each entry
// point in build.rs. The weights come packed by conv1x1_pack.wgsl into uniform-buffer slabs, one
// dispatch per slab (a block of output channels times a chunk of at most 512 input channels for
// `main`, 256 for `main_wide`; the chunks after the first add into y, the last applies the
// epilogue). The accumulator rows are unrolled (`#unroll`): compilers for CPU adapters keep a
// dynamically indexed private array in memory.
//
// `main_whole` and `main_wide_whole` (the 1x1 GEMMs without SHIFTED only, define WHOLE) are the
// same GEMMs as one dispatch: the row block comes from workgroup_id.y and the weights from
// `wall` (all of them, in a storage buffer) instead of one uniform slab per dispatch. On
// lavapipe a storage load costs more than a uniform one, but each dispatch costs tens of
// microseconds, so small planes with many slabs run faster this way. Another define of each
// entry point names the array the rows read (`wslab` or `wall`).

#import gemm_params
#ifdef VEC4
#else
#import gemm_store_scalar
#endif

#bindings
0 params: uniform GemmParams
#ifdef VEC4
// [N, Cin, H, W] as vec4s along the plane.
1 x: read vec4<f32>
#else
// [N, Cin, H, W]
1 x: read f32
#endif
// One slab of packed weights (conv1x1_pack.wgsl): row r (output channel row0 + r) holds input
// channels k0 + 4k .. k0 + 4k + 3 at wslab[r * kc / 4 + k], zero past Cin.
2 wslab: uniform array<vec4<f32>, 4096>
// [Cout] each; bound to a placeholder when the affine flag is off.
3 scale: read f32
4 bias: read f32
#ifdef VEC4
// [N, Cout, H, W] as vec4s; bound to a placeholder when the residual flag is off.
5 residual: read vec4<f32>
// [N, Cout, H, W] as vec4s.
6 y: read_write vec4<f32>
#else
// [N, Cout, Ho, Wo]; bound to a placeholder when the residual flag is off (always, for IM2COL).
5 residual: read f32
// [N, Cout, Ho, Wo]
6 y: read_write f32
#endif
#ifdef SHIFTED
// Per input channel: (floor(xpos), floor(ypos), xpos - floor(xpos), ypos - floor(ypos)).
7 taps: uniform array<vec4<f32>, 4096>
#endif
#endbindings
#ifdef SHIFTED
#ifdef VEC4

#import row_lerp

// The 4 shifted pixels (row i, columns j0 .. j0+3) of input channel ci, plane at vec4 base4.
fn shifted4(base4: u32, ci: u32, i: i32, j0: i32) -> vec4<f32> {
    let t = taps[ci];
    let col = j0 + i32(t.x);
    let o = ((col % 4) + 4) % 4;
    let blk = (col - o) / 4;
    let r = i + i32(t.y);
    return (1.0 - t.w) * row_lerp(base4, r, blk, o, t.z) + t.w * row_lerp(base4, r + 1, blk, o, t.z);
}
#else

// The 4 pixels (rows `r`, columns `c` before the shift) of channel plane `base`, shifted.
fn shifted(base: u32, ci: u32, r: vec4<i32>, c: vec4<i32>) -> vec4<f32> {
    let t = taps[ci];
    let row = r + vec4<i32>(i32(t.y));
    let col = c + vec4<i32>(i32(t.x));
    let h = i32(params.h);
    let w = i32(params.w);
    // Each tap reads 0 outside the image: clamp the address, then mask the value.
    let in_r0 = (row >= vec4<i32>(0)) & (row < vec4<i32>(h));
    let in_r1 = (row >= vec4<i32>(-1)) & (row < vec4<i32>(h - 1));
    let in_c0 = (col >= vec4<i32>(0)) & (col < vec4<i32>(w));
    let in_c1 = (col >= vec4<i32>(-1)) & (col < vec4<i32>(w - 1));
    let r0 = vec4<u32>(clamp(row, vec4<i32>(0), vec4<i32>(h - 1)));
    let r1 = vec4<u32>(clamp(row + vec4<i32>(1), vec4<i32>(0), vec4<i32>(h - 1)));
    let c0 = vec4<u32>(clamp(col, vec4<i32>(0), vec4<i32>(w - 1)));
    let c1 = vec4<u32>(clamp(col + vec4<i32>(1), vec4<i32>(0), vec4<i32>(w - 1)));
    let i00 = vec4<u32>(base) + r0 * params.w + c0;
    let i01 = vec4<u32>(base) + r0 * params.w + c1;
    let i10 = vec4<u32>(base) + r1 * params.w + c0;
    let i11 = vec4<u32>(base) + r1 * params.w + c1;
    let z = vec4<f32>(0.0);
    let q00 = select(z, vec4<f32>(x[i00.x], x[i00.y], x[i00.z], x[i00.w]), in_r0 & in_c0);
    let q01 = select(z, vec4<f32>(x[i01.x], x[i01.y], x[i01.z], x[i01.w]), in_r0 & in_c1);
    let q10 = select(z, vec4<f32>(x[i10.x], x[i10.y], x[i10.z], x[i10.w]), in_r1 & in_c0);
    let q11 = select(z, vec4<f32>(x[i11.x], x[i11.y], x[i11.z], x[i11.w]), in_r1 & in_c1);
    let top = (1.0 - t.z) * q00 + t.z * q01;
    let bottom = (1.0 - t.z) * q10 + t.z * q11;
    return (1.0 - t.w) * top + t.w * bottom;
}
#endif
#else
#ifdef IM2COL

// Column k of the im2col matrix for the 4 pixels whose top-left taps are rows `r`, columns `c`
// of the image starting at `base`.
fn im2col4(base: u32, k: u32, r: vec4<i32>, c: vec4<i32>) -> vec4<f32> {
    let ci = k / 9u;
    let t = k % 9u;
    let row = r + vec4<i32>(i32(t / 3u));
    let col = c + vec4<i32>(i32(t % 3u));
    let h = i32(params.h);
    let w = i32(params.w);
    let inside = (row >= vec4<i32>(0)) & (row < vec4<i32>(h)) & (col >= vec4<i32>(0)) & (col < vec4<i32>(w));
    let idx = vec4<u32>(base + ci * params.h * params.w)
        + vec4<u32>(clamp(row, vec4<i32>(0), vec4<i32>(h - 1))) * params.w
        + vec4<u32>(clamp(col, vec4<i32>(0), vec4<i32>(w - 1)));
    return select(vec4<f32>(0.0), vec4<f32>(x[idx.x], x[idx.y], x[idx.z], x[idx.w]), inside);
}
#else
#import gemm_whole
#endif
#endif

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
#ifdef VEC4
    let plane4 = params.h * params.w / 4u;
#ifdef WHOLE
    // Invocation g of the image owns pixel vec4 g of row block wg.y.
    let rb = wg.y;
    let q = wg.x * WG_SIZE + li;
    if (q >= plane4 || rb * ROWS >= params.nrows) {
        return;
    }
#else
    // Invocation g of the image owns pixel vec4 q of row block rb.
    let g = wg.x * WG_SIZE + li;
    let rb = g / plane4;
    let q = g % plane4;
    if (rb * ROWS >= params.nrows) {
        return;
    }
#endif
#ifdef SHIFTED
    let p0 = q * 4u;
    let i = i32(p0 / params.w);
    let j0 = i32(p0 % params.w);
    let x_base = n * params.cin * plane4;
#else
    let x_base = n * params.cin * plane4 + q;
#endif
#else
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
#ifdef WHOLE
    // Invocation g of the image owns pixels 4g .. 4g + 3 of row block wg.y.
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = wg.y;
    let p0 = g * 4u;
    if (g >= groups || rb * ROWS >= params.nrows) {
        return;
    }
#else
    // Invocation g of the image owns pixels 4q .. 4q + 3 of row block rb.
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = g / groups;
    let p0 = (g % groups) * 4u;
    if (rb * ROWS >= params.nrows) {
        return;
    }
#endif
#ifdef SHIFTED
    // Unshifted source rows and columns of the 4 pixels (pixels past the plane compute on the
    // last one and write nothing).
    var r: vec4<i32>;
    var c: vec4<i32>;
    for (var e = 0u; e < 4u; e++) {
        let p = min(p0 + e, plane_out - 1u);
        r[e] = i32((p / params.wo) * params.stride);
        c[e] = i32((p % params.wo) * params.stride);
    }
#else
#ifdef IM2COL
    // Top-left taps of the 4 pixels (pixels past the plane compute on the last one and write
    // nothing).
    var r: vec4<i32>;
    var c: vec4<i32>;
    for (var e = 0u; e < 4u; e++) {
        let p = min(p0 + e, plane_out - 1u);
        r[e] = i32((p / params.wo) * params.stride) - 1;
        c[e] = i32((p % params.wo) * params.stride) - 1;
    }
#else
    // Source offsets of the 4 pixels (pixels past the plane read the last one, write nothing).
    var src: vec4<u32>;
    for (var e = 0u; e < 4u; e++) {
        let p = min(p0 + e, plane_out - 1u);
        src[e] = (p / params.wo) * params.stride * params.w + (p % params.wo) * params.stride;
    }
    let s0 = src.x;
    let s1 = src.y;
    let s2 = src.z;
    let s3 = src.w;
#endif
#endif
    let x_base = n * params.cin * plane_in;
#endif
    let kv = params.kc / 4u;
    let wb = rb * ROWS * kv;

#unroll M ROWS
    var a##M = vec4<f32>(0.0);
#endunroll
    var w: vec4<f32>;
    // Four input channels a step; a chunk whose width is not a multiple of 4 ends with a step
    // whose channels past k1 read 0 (their packed weights are 0 too). One loop body, not a
    // second one for the last 1..3 channels: each unrolled body costs compile time (seconds
    // per kernel on llvmpipe, docs/performance.md).
    for (var ci = params.k0; ci < params.k1; ci += 4u) {
#ifdef SHIFTED
#ifdef VEC4
        let b0 = x_base + ci * plane4;
        let x0 = shifted4(b0, ci, i, j0);
        let x1v = shifted4(b0 + plane4, ci + 1u, i, j0);
        let x2v = shifted4(b0 + 2u * plane4, ci + 2u, i, j0);
        let x3v = shifted4(b0 + 3u * plane4, ci + 3u, i, j0);
#else
        let b0 = x_base + ci * plane_in;
        let x0 = shifted(b0, ci, r, c);
        let x1v = shifted(b0 + plane_in, ci + 1u, r, c);
        let x2v = shifted(b0 + 2u * plane_in, ci + 2u, r, c);
        let x3v = shifted(b0 + 3u * plane_in, ci + 3u, r, c);
#endif
#else
#ifdef IM2COL
        let x0 = im2col4(x_base, ci, r, c);
        let x1v = im2col4(x_base, ci + 1u, r, c);
        let x2v = im2col4(x_base, ci + 2u, r, c);
        let x3v = im2col4(x_base, ci + 3u, r, c);
#else
#ifdef VEC4
        let xo = x_base + ci * plane4;
        let x0 = input4(x[xo], ci);
        let x1v = input4(x[xo + plane4], ci + 1u);
        let x2v = input4(x[xo + 2u * plane4], ci + 2u);
        let x3v = input4(x[xo + 3u * plane4], ci + 3u);
#else
        let b0 = x_base + ci * plane_in;
        let b1 = b0 + plane_in;
        let b2 = b1 + plane_in;
        let b3 = b2 + plane_in;
        let x0 = input4(vec4<f32>(x[b0 + s0], x[b0 + s1], x[b0 + s2], x[b0 + s3]), ci);
        let x1v = input4(vec4<f32>(x[b1 + s0], x[b1 + s1], x[b1 + s2], x[b1 + s3]), ci + 1u);
        let x2v = input4(vec4<f32>(x[b2 + s0], x[b2 + s1], x[b2 + s2], x[b2 + s3]), ci + 2u);
        let x3v = input4(vec4<f32>(x[b3 + s0], x[b3 + s1], x[b3 + s2], x[b3 + s3]), ci + 3u);
#endif
#endif
#endif
        let z = vec4<f32>(0.0);
        let x1 = select(z, x1v, ci + 1u < params.k1);
        let x2 = select(z, x2v, ci + 2u < params.k1);
        let x3 = select(z, x3v, ci + 3u < params.k1);
        let k = (ci - params.k0) / 4u;
#unroll M ROWS
        w = WEIGHTS[wb + M##u * kv + k]; a##M += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
#endunroll
    }

#ifdef VEC4
#include gemm_epilogue_vec4
#else
#include gemm_epilogue_scalar
#endif
