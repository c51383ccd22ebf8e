#!/usr/bin/env python3
"""Generates the register-tiled GEMM shaders of activeshift; run from the repository root:

    python3 tools/gemm_shaders.py            # write the shaders
    python3 tools/gemm_shaders.py --check    # exit 1 if a committed shader differs (CI)

It writes shaders/conv1x1_vec4.wgsl, conv1x1_reg.wgsl, asl_conv1x1.wgsl, asl_conv1x1_vec4.wgsl
and conv3x3_gemm.wgsl. Each has two entry points, `main` (32 output channels per invocation)
and `main_wide` (64), whose accumulator rows are unrolled by hand: compilers for CPU adapters
(lavapipe) keep a dynamically indexed private array in memory, which halves the GEMM's speed.
The generated WGSL is committed and validated like every other shader (tests/shaders.rs): edit
this script, run it, commit both.
"""
import os
import sys

def decl(R, indent="    "):
    return "\n".join(f"{indent}var a{m} = vec4<f32>(0.0);" for m in range(R))
def rows4(R, indent, wexpr):
    # four input channels x0..x3 (vec4 of pixels) times row m's weights (a vec4 over ci)
    return "\n".join(f"{indent}w = {wexpr(m)}; a{m} += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;" for m in range(R))
def rows1(R, indent, wexpr):
    return "\n".join(f"{indent}a{m} += {wexpr(m)} * xv;" for m in range(R))
def store(R, indent="    "):
    return "\n".join(f"{indent}acc[{m}] = a{m};" for m in range(R))


def build(R, whole=False):
    """The shaders for R output channels per invocation, as [(file, text)] with ROWS unset.

    With `whole`, only the GEMMs that also have a one-dispatch form (conv1x1_vec4, conv1x1_reg),
    whose bodies are then that form: the row block comes from workgroup_id.y and the weights
    from `wall`, the whole packed matrix in a storage buffer, so the GEMM is one dispatch over
    every row block and all of K (used where the uniform slabs would need several small
    dispatches, see src/gpu/kernels/conv1x1.rs)."""
    OUT = []

    PARAMS = """// Mirrors `GemmParams` in src/gpu/kernels/conv1x1.rs.
struct GemmParams {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
    // bit 0: affine, bit 1: residual add, bit 2: ReLU (set on the last K chunk only);
    // bit 3: add to what an earlier K chunk left in y; bit 4 (the 1x1 GEMMs only): read each
    // input value through max(in_scale[ci] * x + in_bias[ci], 0).
    flags: u32,
    // First output channel of this dispatch's weight slab.
    row0: u32,
    // Floats per packed weight row (the K chunk width, a multiple of 4).
    kc: u32,
    // This dispatch's input channels: k0 <= ci < k1.
    k0: u32,
    k1: u32,
    // Output channels of this dispatch's slab (from row0).
    nrows: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG_SIZE: u32 = 32u;
const FLAG_AFFINE: u32 = 1u;
const FLAG_RESIDUAL: u32 = 2u;
const FLAG_RELU: u32 = 4u;
const FLAG_ACCUMULATE: u32 = 8u;
"""

    WSLAB = """// One slab of packed weights (conv1x1_pack.wgsl): row r (output channel row0 + r) holds input
// channels k0 + 4k .. k0 + 4k + 3 at wslab[r * kc / 4 + k], zero past Cin.
@group(0) @binding(2) var<uniform> wslab: array<vec4<f32>, 4096>;
// [Cout] each; bound to a placeholder when the affine flag is off.
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;"""

    def epilogue_vec4(R):
        return """    var acc: array<vec4<f32>, ROWS>;
""" + store(R) + """
    let y_base = n * params.cout * plane4 + q;
    let co0 = params.row0 + rb * ROWS;
    for (var m = 0u; m < ROWS; m++) {
        let co = co0 + m;
        if (co >= params.cout) {
            break;
        }
        let idx = y_base + co * plane4;
        var v = acc[m];
        if ((params.flags & FLAG_ACCUMULATE) != 0u) {
            v += y[idx];
        }
        if ((params.flags & FLAG_AFFINE) != 0u) {
            v = scale[co] * v + bias[co];
        }
        if ((params.flags & FLAG_RESIDUAL) != 0u) {
            v += residual[idx];
        }
        if ((params.flags & FLAG_RELU) != 0u) {
            v = max(v, vec4<f32>(0.0));
        }
        y[idx] = v;
    }
}
"""

    def epilogue_scalar(R):
        return """    var acc: array<vec4<f32>, ROWS>;
""" + store(R) + """
    let y_base = n * params.cout * plane_out;
    let co0 = params.row0 + rb * ROWS;
    for (var m = 0u; m < ROWS; m++) {
        let co = co0 + m;
        if (co >= params.cout) {
            break;
        }
        for (var e = 0u; e < 4u; e++) {
            let p = p0 + e;
            if (p >= plane_out) {
                break;
            }
            let idx = y_base + co * plane_out + p;
            var v = acc[m][e];
            if ((params.flags & FLAG_ACCUMULATE) != 0u) {
                v += y[idx];
            }
            if ((params.flags & FLAG_AFFINE) != 0u) {
                v = scale[co] * v + bias[co];
            }
            if ((params.flags & FLAG_RESIDUAL) != 0u) {
                v += residual[idx];
            }
            if ((params.flags & FLAG_RELU) != 0u) {
                v = max(v, 0.0);
            }
            y[idx] = v;
        }
    }
}
"""

    WSRC = "wall" if whole else "wslab"
    W4 = lambda m: f"{WSRC}[wb + {m}u * kv + k]"
    W1 = lambda m: f"{WSRC}[wb + {m}u * kv + k][lane]"
    WALL = """// The same packed weights as one storage array, for the `_whole` entry points: rows padded to a
// multiple of 64 output channels, kc = K rounded up to 4 (one dispatch covers all of them).
@group(0) @binding(7) var<storage, read> wall: array<vec4<f32>>;
// [Cin] each: the per-channel affine + ReLU applied to every input value when flag bit 4 is
// set (the block's pre-activation folded into the convolution that reads it); bound to a
// placeholder otherwise.
@group(0) @binding(8) var<storage, read> in_scale: array<f32>;
@group(0) @binding(9) var<storage, read> in_bias: array<f32>;

const FLAG_INPUT_AFFINE: u32 = 16u;

// Input channel ci's values `v` as the GEMM reads them.
fn input4(v: vec4<f32>, ci: u32) -> vec4<f32> {
    if ((params.flags & FLAG_INPUT_AFFINE) == 0u) {
        return v;
    }
    return max(in_scale[ci] * v + vec4<f32>(in_bias[ci]), vec4<f32>(0.0));
}
"""

    if whole:
        VEC4_INDEX = """    // Invocation g of the image owns pixel vec4 g of row block wg.y (ROWS output channels).
    let rb = wg.y;
    let q = wg.x * WG_SIZE + li;
    if (q >= plane4 || rb * ROWS >= params.nrows) {
        return;
    }"""
        REG_INDEX = """    // Invocation g of the image owns pixels 4g .. 4g + 3 of row block wg.y (ROWS output channels).
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = wg.y;
    let p0 = g * 4u;
    if (g >= groups || rb * ROWS >= params.nrows) {
        return;
    }"""
    else:
        VEC4_INDEX = """    // Invocation g of the image owns pixel vec4 q of row block rb (ROWS output channels).
    let g = wg.x * WG_SIZE + li;
    let rb = g / plane4;
    let q = g % plane4;
    if (rb * ROWS >= params.nrows) {
        return;
    }"""
        REG_INDEX = """    // Invocation g of the image owns pixels 4q .. 4q + 3 of row block rb (ROWS output channels).
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = g / groups;
    let p0 = (g % groups) * 4u;
    if (rb * ROWS >= params.nrows) {
        return;
    }"""

    vec4 = """// 1x1 convolution, stride 1, as a register-tiled GEMM with vectorised loads: the fast
// variant for CPU-like adapters (lavapipe), where every load whose address varies across
// invocations costs a loop over the SIMD lanes whatever its width (so one vec4 load costs about
// what a scalar load does), and a dynamically indexed private array lives in memory.
//
//   Y[n, co, p] = epilogue(sum_ci W[co, ci] * X[n, ci, p])
//
// Needs H*W divisible by 4: pixels are read and written as vec4s. Each invocation owns 4
// consecutive pixels and ROWS output channels; the weights come packed into uniform-buffer
// slabs by conv1x1_pack.wgsl, one dispatch per slab (a block of output channels times a chunk
// of at most 512 input channels for `main`, 256 for `main_wide`; the chunks after the first add
// into y, the last applies the epilogue).

""" + PARAMS + """
@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W] as vec4s along the plane.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
""" + WSLAB + """
// [N, Cout, H, W] as vec4s; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<vec4<f32>>;
// [N, Cout, H, W] as vec4s.
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>;
""" + WALL + """
@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane4 = params.h * params.w / 4u;
""" + VEC4_INDEX + """
    let x_base = n * params.cin * plane4 + q;
    let kv = params.kc / 4u;
    let wb = rb * ROWS * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

""" + decl(R) + """
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let xo = x_base + ci * plane4;
        let x0 = input4(x[xo], ci);
        let x1 = input4(x[xo + plane4], ci + 1u);
        let x2 = input4(x[xo + 2u * plane4], ci + 2u);
        let x3 = input4(x[xo + 3u * plane4], ci + 3u);
        let k = (ci - params.k0) / 4u;
""" + rows4(R, "        ", W4) + """
    }
    // The last 1..3 input channels when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = input4(x[x_base + ci * plane4], ci);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
""" + rows1(R, "        ", W1) + """
    }

""" + epilogue_vec4(R)

    reg = """// 1x1 convolution with stride, any shape: the general register-tiled GEMM (the variant for
// shapes conv1x1_vec4.wgsl does not take). Same packed weights, dispatches and epilogue as
// conv1x1_vec4.wgsl, but pixels are read one by one (strided source, any plane size):
//
//   Y[n, co, p] = epilogue(sum_ci W[co, ci] * X[n, ci, src(p)]),  src(i, j) = (i*s, j*s).
//
// Each invocation owns 4 consecutive output pixels and ROWS output channels.

""" + PARAMS + """
@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W]
@group(0) @binding(1) var<storage, read> x: array<f32>;
""" + WSLAB + """
// [N, Cout, Ho, Wo]; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<f32>;
// [N, Cout, Ho, Wo]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
""" + WALL + """
@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
""" + REG_INDEX + """
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
    let x_base = n * params.cin * plane_in;
    let kv = params.kc / 4u;
    let wb = rb * ROWS * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

""" + decl(R) + """
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let b0 = x_base + ci * plane_in;
        let b1 = b0 + plane_in;
        let b2 = b1 + plane_in;
        let b3 = b2 + plane_in;
        let x0 = input4(vec4<f32>(x[b0 + s0], x[b0 + s1], x[b0 + s2], x[b0 + s3]), ci);
        let x1 = input4(vec4<f32>(x[b1 + s0], x[b1 + s1], x[b1 + s2], x[b1 + s3]), ci + 1u);
        let x2 = input4(vec4<f32>(x[b2 + s0], x[b2 + s1], x[b2 + s2], x[b2 + s3]), ci + 2u);
        let x3 = input4(vec4<f32>(x[b3 + s0], x[b3 + s1], x[b3 + s2], x[b3 + s3]), ci + 3u);
        let k = (ci - params.k0) / 4u;
""" + rows4(R, "        ", W4) + """
    }
    // The last 1..3 input channels when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let b = x_base + ci * plane_in;
        let xv = input4(vec4<f32>(x[b + s0], x[b + s1], x[b + s2], x[b + s3]), ci);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
""" + rows1(R, "        ", W1) + """
    }

""" + epilogue_scalar(R)

    fused = """// The Active Shift Layer fused into the following 1x1 convolution (docs/design.md §2): the GEMM
// of conv1x1_reg.wgsl whose input pixels are read through the ASL's bilinear shift, so the
// shifted tensor never exists in memory.
//
//   Y[n, co, i, j] = epilogue(sum_ci W[co, ci] * ASL(x)[n, ci, i, j])
//   ASL(x)[n, c, i, j] = bilinear sample of x[n, c] at row i*s + ypos[c], column j*s + xpos[c],
//                        each of the four taps reading 0 outside the image (asl_forward.wgsl).
//
// x is [N, Cin, H, W]; y is [N, Cout, Ho, Wo] with Ho = (H-1)/s+1, Wo = (W-1)/s+1. Each channel's
// taps (integer offsets and fractions) come precomputed by asl_taps.wgsl; a channel whose shift
// is NaN gets offsets far outside every image, so it contributes 0. Same packed weights,
// dispatches and epilogue as conv1x1_reg.wgsl.

""" + PARAMS + """
@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W]
@group(0) @binding(1) var<storage, read> x: array<f32>;
""" + WSLAB + """
// [N, Cout, Ho, Wo]; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<f32>;
// [N, Cout, Ho, Wo]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
// Per input channel: (floor(xpos), floor(ypos), xpos - floor(xpos), ypos - floor(ypos)).
@group(0) @binding(7) var<uniform> taps: array<vec4<f32>, 4096>;

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

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    // Invocation g of the image owns pixels 4q .. 4q + 3 of row block rb (ROWS output channels).
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = g / groups;
    let p0 = (g % groups) * 4u;
    if (rb * ROWS >= params.nrows) {
        return;
    }
    // Unshifted source rows and columns of the 4 pixels (pixels past the plane compute on the
    // last one and write nothing).
    var r: vec4<i32>;
    var c: vec4<i32>;
    for (var e = 0u; e < 4u; e++) {
        let p = min(p0 + e, plane_out - 1u);
        r[e] = i32((p / params.wo) * params.stride);
        c[e] = i32((p % params.wo) * params.stride);
    }
    let x_base = n * params.cin * plane_in;
    let kv = params.kc / 4u;
    let wb = rb * ROWS * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

""" + decl(R) + """
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let b0 = x_base + ci * plane_in;
        let x0 = shifted(b0, ci, r, c);
        let x1 = shifted(b0 + plane_in, ci + 1u, r, c);
        let x2 = shifted(b0 + 2u * plane_in, ci + 2u, r, c);
        let x3 = shifted(b0 + 3u * plane_in, ci + 3u, r, c);
        let k = (ci - params.k0) / 4u;
""" + rows4(R, "        ", W4) + """
    }
    // The last 1..3 input channels when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = shifted(x_base + ci * plane_in, ci, r, c);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
""" + rows1(R, "        ", W1) + """
    }

""" + epilogue_scalar(R)

    OUT.append(('conv1x1_vec4.wgsl', vec4))
    OUT.append(('conv1x1_reg.wgsl', reg))
    if whole:
        return OUT
    OUT.append(('asl_conv1x1.wgsl', fused))

    fused4 = """// The Active Shift Layer fused into the following 1x1 convolution, stride 1 and W divisible by
// 4: the vectorised twin of asl_conv1x1.wgsl (same results, bindings and dispatches, but x,
// residual and y are read and written as vec4s). Each invocation owns 4 adjacent output pixels
// of one row, j0 .. j0+3 with j0 a multiple of 4; a channel's shifted row segment needs input
// columns j0 + fx .. j0 + fx + 4, which lie in two aligned vec4s of the input row, so each input
// channel costs 4 vec4 loads (2 rows x 2 blocks) instead of 16 scalar ones.
//
//   Y[n, co, i, j] = epilogue(sum_ci W[co, ci] * ASL(x)[n, ci, i, j])
//
// SwiftShader (Chromium's software WebGPU) spends minutes compiling the four-channel loop body
// below, until Chromium kills its GPU process: src/gpu/kernels/asl_conv1x1.rs runs
// asl_conv1x1.wgsl there instead.

""" + PARAMS + """
@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W] as vec4s along the rows.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
""" + WSLAB + """
// [N, Cout, H, W] as vec4s; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<vec4<f32>>;
// [N, Cout, H, W] as vec4s.
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>;
// Per input channel: (floor(xpos), floor(ypos), xpos - floor(xpos), ypos - floor(ypos)).
@group(0) @binding(7) var<uniform> taps: array<vec4<f32>, 4096>;

// Input row `r` of the channel plane starting at vec4 `base4`, interpolated horizontally with
// weight `tx` for the 4 pixels whose left taps are columns 4 * blk + o .. 4 * blk + o + 3
// (0 <= o < 4); zero outside the image.
fn row_lerp(base4: u32, r: i32, blk: i32, o: i32, tx: f32) -> vec4<f32> {
    let w4 = i32(params.w / 4u);
    let row_in = r >= 0 && r < i32(params.h);
    let row = base4 + u32(clamp(r, 0, i32(params.h) - 1)) * u32(w4);
    let z = vec4<f32>(0.0);
    let a = select(z, x[row + u32(clamp(blk, 0, w4 - 1))], row_in && blk >= 0 && blk < w4);
    let b = select(z, x[row + u32(clamp(blk + 1, 0, w4 - 1))], row_in && blk + 1 >= 0 && blk + 1 < w4);
    let s1 = vec4<f32>(a.yzw, b.x);
    let s2 = vec4<f32>(a.zw, b.xy);
    let s3 = vec4<f32>(a.w, b.xyz);
    let lo = select(select(select(a, s1, o == 1), s2, o == 2), s3, o == 3);
    let hi = select(select(select(s1, s2, o == 1), s3, o == 2), b, o == 3);
    return (1.0 - tx) * lo + tx * hi;
}

// The 4 shifted pixels (row i, columns j0 .. j0+3) of input channel ci, plane at vec4 base4.
fn shifted4(base4: u32, ci: u32, i: i32, j0: i32) -> vec4<f32> {
    let t = taps[ci];
    let col = j0 + i32(t.x);
    let o = ((col % 4) + 4) % 4;
    let blk = (col - o) / 4;
    let r = i + i32(t.y);
    return (1.0 - t.w) * row_lerp(base4, r, blk, o, t.z) + t.w * row_lerp(base4, r + 1, blk, o, t.z);
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane4 = params.h * params.w / 4u;
    // Invocation g of the image owns pixel vec4 q of row block rb (ROWS output channels).
    let g = wg.x * WG_SIZE + li;
    let rb = g / plane4;
    let q = g % plane4;
    if (rb * ROWS >= params.nrows) {
        return;
    }
    let p0 = q * 4u;
    let i = i32(p0 / params.w);
    let j0 = i32(p0 % params.w);
    let x_base = n * params.cin * plane4;
    let kv = params.kc / 4u;
    let wb = rb * ROWS * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

""" + decl(R) + """
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let b0 = x_base + ci * plane4;
        let x0 = shifted4(b0, ci, i, j0);
        let x1 = shifted4(b0 + plane4, ci + 1u, i, j0);
        let x2 = shifted4(b0 + 2u * plane4, ci + 2u, i, j0);
        let x3 = shifted4(b0 + 3u * plane4, ci + 3u, i, j0);
        let k = (ci - params.k0) / 4u;
""" + rows4(R, "        ", W4) + """
    }
    // The last 1..3 input channels when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = shifted4(x_base + ci * plane4, ci, i, j0);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
""" + rows1(R, "        ", W1) + """
    }

""" + epilogue_vec4(R)
    OUT.append(('asl_conv1x1_vec4.wgsl', fused4))

    stem = """// 3x3 convolution, padding 1, any stride, no bias, as a GEMM whose input tile is read through
// im2col on the fly (the stem of the networks): the register-tiled GEMM of conv1x1_reg.wgsl with
// K = 9 * Cin, input channel k = 9 * ci + 3 * ky + kx reading x[n, ci, i*s + ky - 1, j*s + kx - 1]
// (0 outside the image). The weight [Cout, Cin, 3, 3] is the [Cout, 9 * Cin] matrix packed by
// conv1x1_pack.wgsl; same dispatches as the other packed GEMMs (no epilogue is used).
//
//   y[n, co, i, j] = sum over ci, ky, kx of w[co, ci, ky, kx] * x[n, ci, i*s + ky - 1, j*s + kx - 1]

""" + PARAMS + """
@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W]
@group(0) @binding(1) var<storage, read> x: array<f32>;
""" + WSLAB + """
// Bound to a placeholder (no residual here).
@group(0) @binding(5) var<storage, read> residual: array<f32>;
// [N, Cout, Ho, Wo]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

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

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    // Invocation g of the image owns pixels 4q .. 4q + 3 of row block rb.
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = g / groups;
    let p0 = (g % groups) * 4u;
    if (rb * ROWS >= params.nrows) {
        return;
    }
    // Top-left taps of the 4 pixels (pixels past the plane compute on the last one and write
    // nothing).
    var r: vec4<i32>;
    var c: vec4<i32>;
    for (var e = 0u; e < 4u; e++) {
        let p = min(p0 + e, plane_out - 1u);
        r[e] = i32((p / params.wo) * params.stride) - 1;
        c[e] = i32((p % params.wo) * params.stride) - 1;
    }
    let x_base = n * params.cin * plane_in;
    let kv = params.kc / 4u;
    let wb = rb * ROWS * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

""" + decl(R) + """
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let x0 = im2col4(x_base, ci, r, c);
        let x1 = im2col4(x_base, ci + 1u, r, c);
        let x2 = im2col4(x_base, ci + 2u, r, c);
        let x3 = im2col4(x_base, ci + 3u, r, c);
        let k = (ci - params.k0) / 4u;
""" + rows4(R, "        ", W4) + """
    }
    // The last 1..3 columns when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = im2col4(x_base, ci, r, c);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
""" + rows1(R, "        ", W1) + """
    }

""" + epilogue_scalar(R)
    OUT.append(('conv3x3_gemm.wgsl', stem))

    return OUT


NOTE = """// Two entry points: `main` owns 32 output channels per invocation, `main_wide` 64 (for layers
// with at least 64 output channels: more multiply-adds per pixel load). Their row blocks are
// unrolled by hand (generated by tools/gemm_shaders.py): compilers for CPU adapters keep a
// dynamically indexed accumulator array in memory.
"""


NOTE_WHOLE = """// `main_whole` and `main_wide_whole` are the same GEMMs as one dispatch: the row block comes from
// workgroup_id.y and the weights from `wall` (all of them, in a storage buffer) instead of one
// uniform slab per dispatch. On lavapipe a storage load costs more than a uniform one, but each
// dispatch costs tens of microseconds, so small planes with many slabs run faster this way.
"""
def main():
    check = "--check" in sys.argv[1:]
    stale = []
    narrow = dict(build(32))
    wide = dict(build(64))
    narrow_whole = dict(build(32, whole=True))
    wide_whole = dict(build(64, whole=True))
    body = lambda t: t[t.index("@compute"):]
    for name, a in narrow.items():
        head = a[:a.index("@compute")]
        s0 = head.index("// Mirrors `GemmParams`")
        head = head[:s0] + NOTE + (NOTE_WHOLE if name in narrow_whole else "") + "\n" + head[s0:]
        text = head + body(a).replace("ROWS", "32u") + "\n" + body(wide[name]).replace(
            "ROWS", "64u").replace("fn main(", "fn main_wide(", 1)
        if name in narrow_whole:
            text += "\n" + body(narrow_whole[name]).replace("ROWS", "32u").replace(
                "fn main(", "fn main_whole(", 1)
            text += "\n" + body(wide_whole[name]).replace("ROWS", "64u").replace(
                "fn main(", "fn main_wide_whole(", 1)
        text = text.replace("ROWS output channels", "32 or 64 output channels")
        path = os.path.join("shaders", name)
        if check:
            with open(path) as f:
                if f.read() != text:
                    stale.append(path)
        else:
            with open(path, "w") as f:
                f.write(text)
    if stale:
        print("differs from tools/gemm_shaders.py's output (run it and commit): " + ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
