// 3x3 convolution, padding 1, any stride, no bias, as a GEMM whose input tile is read through
// im2col on the fly (the stem of the networks): the register-tiled GEMM of conv1x1_reg.wgsl with
// K = 9 * Cin, input channel k = 9 * ci + 3 * ky + kx reading x[n, ci, i*s + ky - 1, j*s + kx - 1]
// (0 outside the image). The weight [Cout, Cin, 3, 3] is the [Cout, 9 * Cin] matrix packed by
// conv1x1_pack.wgsl; same dispatches as the other packed GEMMs (no epilogue is used).
//
//   y[n, co, i, j] = sum over ci, ky, kx of w[co, ci, ky, kx] * x[n, ci, i*s + ky - 1, j*s + kx - 1]

// Two entry points: `main` owns 32 output channels per invocation, `main_wide` 64 (for layers
// with at least 64 output channels: more multiply-adds per pixel load). Their row blocks are
// unrolled by hand (generated): compilers for CPU adapters keep a dynamically indexed
// accumulator array in memory.

// Mirrors `GemmParams` in src/gpu/kernels/conv1x1.rs.
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
    // bit 3: add to what an earlier K chunk left in y.
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

@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// One slab of packed weights (conv1x1_pack.wgsl): row r (output channel row0 + r) holds input
// channels k0 + 4k .. k0 + 4k + 3 at wslab[r * kc / 4 + k], zero past Cin.
@group(0) @binding(2) var<uniform> wslab: array<vec4<f32>, 4096>;
// [Cout] each; bound to a placeholder when the affine flag is off.
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
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
    if (rb * 32u >= params.nrows) {
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
    let wb = rb * 32u * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    var a9 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0);
    var a13 = vec4<f32>(0.0);
    var a14 = vec4<f32>(0.0);
    var a15 = vec4<f32>(0.0);
    var a16 = vec4<f32>(0.0);
    var a17 = vec4<f32>(0.0);
    var a18 = vec4<f32>(0.0);
    var a19 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0);
    var a21 = vec4<f32>(0.0);
    var a22 = vec4<f32>(0.0);
    var a23 = vec4<f32>(0.0);
    var a24 = vec4<f32>(0.0);
    var a25 = vec4<f32>(0.0);
    var a26 = vec4<f32>(0.0);
    var a27 = vec4<f32>(0.0);
    var a28 = vec4<f32>(0.0);
    var a29 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0);
    var a31 = vec4<f32>(0.0);
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let x0 = im2col4(x_base, ci, r, c);
        let x1 = im2col4(x_base, ci + 1u, r, c);
        let x2 = im2col4(x_base, ci + 2u, r, c);
        let x3 = im2col4(x_base, ci + 3u, r, c);
        let k = (ci - params.k0) / 4u;
        w = wslab[wb + 0u * kv + k]; a0 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 1u * kv + k]; a1 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 2u * kv + k]; a2 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 3u * kv + k]; a3 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 4u * kv + k]; a4 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 5u * kv + k]; a5 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 6u * kv + k]; a6 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 7u * kv + k]; a7 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 8u * kv + k]; a8 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 9u * kv + k]; a9 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 10u * kv + k]; a10 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 11u * kv + k]; a11 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 12u * kv + k]; a12 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 13u * kv + k]; a13 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 14u * kv + k]; a14 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 15u * kv + k]; a15 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 16u * kv + k]; a16 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 17u * kv + k]; a17 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 18u * kv + k]; a18 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 19u * kv + k]; a19 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 20u * kv + k]; a20 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 21u * kv + k]; a21 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 22u * kv + k]; a22 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 23u * kv + k]; a23 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 24u * kv + k]; a24 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 25u * kv + k]; a25 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 26u * kv + k]; a26 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 27u * kv + k]; a27 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 28u * kv + k]; a28 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 29u * kv + k]; a29 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 30u * kv + k]; a30 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 31u * kv + k]; a31 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
    }
    // The last 1..3 columns when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = im2col4(x_base, ci, r, c);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
        a0 += wslab[wb + 0u * kv + k][lane] * xv;
        a1 += wslab[wb + 1u * kv + k][lane] * xv;
        a2 += wslab[wb + 2u * kv + k][lane] * xv;
        a3 += wslab[wb + 3u * kv + k][lane] * xv;
        a4 += wslab[wb + 4u * kv + k][lane] * xv;
        a5 += wslab[wb + 5u * kv + k][lane] * xv;
        a6 += wslab[wb + 6u * kv + k][lane] * xv;
        a7 += wslab[wb + 7u * kv + k][lane] * xv;
        a8 += wslab[wb + 8u * kv + k][lane] * xv;
        a9 += wslab[wb + 9u * kv + k][lane] * xv;
        a10 += wslab[wb + 10u * kv + k][lane] * xv;
        a11 += wslab[wb + 11u * kv + k][lane] * xv;
        a12 += wslab[wb + 12u * kv + k][lane] * xv;
        a13 += wslab[wb + 13u * kv + k][lane] * xv;
        a14 += wslab[wb + 14u * kv + k][lane] * xv;
        a15 += wslab[wb + 15u * kv + k][lane] * xv;
        a16 += wslab[wb + 16u * kv + k][lane] * xv;
        a17 += wslab[wb + 17u * kv + k][lane] * xv;
        a18 += wslab[wb + 18u * kv + k][lane] * xv;
        a19 += wslab[wb + 19u * kv + k][lane] * xv;
        a20 += wslab[wb + 20u * kv + k][lane] * xv;
        a21 += wslab[wb + 21u * kv + k][lane] * xv;
        a22 += wslab[wb + 22u * kv + k][lane] * xv;
        a23 += wslab[wb + 23u * kv + k][lane] * xv;
        a24 += wslab[wb + 24u * kv + k][lane] * xv;
        a25 += wslab[wb + 25u * kv + k][lane] * xv;
        a26 += wslab[wb + 26u * kv + k][lane] * xv;
        a27 += wslab[wb + 27u * kv + k][lane] * xv;
        a28 += wslab[wb + 28u * kv + k][lane] * xv;
        a29 += wslab[wb + 29u * kv + k][lane] * xv;
        a30 += wslab[wb + 30u * kv + k][lane] * xv;
        a31 += wslab[wb + 31u * kv + k][lane] * xv;
    }

    var acc: array<vec4<f32>, 32u>;
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = a4;
    acc[5] = a5;
    acc[6] = a6;
    acc[7] = a7;
    acc[8] = a8;
    acc[9] = a9;
    acc[10] = a10;
    acc[11] = a11;
    acc[12] = a12;
    acc[13] = a13;
    acc[14] = a14;
    acc[15] = a15;
    acc[16] = a16;
    acc[17] = a17;
    acc[18] = a18;
    acc[19] = a19;
    acc[20] = a20;
    acc[21] = a21;
    acc[22] = a22;
    acc[23] = a23;
    acc[24] = a24;
    acc[25] = a25;
    acc[26] = a26;
    acc[27] = a27;
    acc[28] = a28;
    acc[29] = a29;
    acc[30] = a30;
    acc[31] = a31;
    let y_base = n * params.cout * plane_out;
    let co0 = params.row0 + rb * 32u;
    for (var m = 0u; m < 32u; m++) {
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

@compute @workgroup_size(WG_SIZE)
fn main_wide(
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
    if (rb * 64u >= params.nrows) {
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
    let wb = rb * 64u * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    var a8 = vec4<f32>(0.0);
    var a9 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0);
    var a11 = vec4<f32>(0.0);
    var a12 = vec4<f32>(0.0);
    var a13 = vec4<f32>(0.0);
    var a14 = vec4<f32>(0.0);
    var a15 = vec4<f32>(0.0);
    var a16 = vec4<f32>(0.0);
    var a17 = vec4<f32>(0.0);
    var a18 = vec4<f32>(0.0);
    var a19 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0);
    var a21 = vec4<f32>(0.0);
    var a22 = vec4<f32>(0.0);
    var a23 = vec4<f32>(0.0);
    var a24 = vec4<f32>(0.0);
    var a25 = vec4<f32>(0.0);
    var a26 = vec4<f32>(0.0);
    var a27 = vec4<f32>(0.0);
    var a28 = vec4<f32>(0.0);
    var a29 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0);
    var a31 = vec4<f32>(0.0);
    var a32 = vec4<f32>(0.0);
    var a33 = vec4<f32>(0.0);
    var a34 = vec4<f32>(0.0);
    var a35 = vec4<f32>(0.0);
    var a36 = vec4<f32>(0.0);
    var a37 = vec4<f32>(0.0);
    var a38 = vec4<f32>(0.0);
    var a39 = vec4<f32>(0.0);
    var a40 = vec4<f32>(0.0);
    var a41 = vec4<f32>(0.0);
    var a42 = vec4<f32>(0.0);
    var a43 = vec4<f32>(0.0);
    var a44 = vec4<f32>(0.0);
    var a45 = vec4<f32>(0.0);
    var a46 = vec4<f32>(0.0);
    var a47 = vec4<f32>(0.0);
    var a48 = vec4<f32>(0.0);
    var a49 = vec4<f32>(0.0);
    var a50 = vec4<f32>(0.0);
    var a51 = vec4<f32>(0.0);
    var a52 = vec4<f32>(0.0);
    var a53 = vec4<f32>(0.0);
    var a54 = vec4<f32>(0.0);
    var a55 = vec4<f32>(0.0);
    var a56 = vec4<f32>(0.0);
    var a57 = vec4<f32>(0.0);
    var a58 = vec4<f32>(0.0);
    var a59 = vec4<f32>(0.0);
    var a60 = vec4<f32>(0.0);
    var a61 = vec4<f32>(0.0);
    var a62 = vec4<f32>(0.0);
    var a63 = vec4<f32>(0.0);
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let x0 = im2col4(x_base, ci, r, c);
        let x1 = im2col4(x_base, ci + 1u, r, c);
        let x2 = im2col4(x_base, ci + 2u, r, c);
        let x3 = im2col4(x_base, ci + 3u, r, c);
        let k = (ci - params.k0) / 4u;
        w = wslab[wb + 0u * kv + k]; a0 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 1u * kv + k]; a1 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 2u * kv + k]; a2 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 3u * kv + k]; a3 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 4u * kv + k]; a4 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 5u * kv + k]; a5 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 6u * kv + k]; a6 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 7u * kv + k]; a7 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 8u * kv + k]; a8 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 9u * kv + k]; a9 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 10u * kv + k]; a10 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 11u * kv + k]; a11 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 12u * kv + k]; a12 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 13u * kv + k]; a13 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 14u * kv + k]; a14 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 15u * kv + k]; a15 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 16u * kv + k]; a16 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 17u * kv + k]; a17 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 18u * kv + k]; a18 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 19u * kv + k]; a19 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 20u * kv + k]; a20 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 21u * kv + k]; a21 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 22u * kv + k]; a22 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 23u * kv + k]; a23 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 24u * kv + k]; a24 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 25u * kv + k]; a25 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 26u * kv + k]; a26 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 27u * kv + k]; a27 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 28u * kv + k]; a28 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 29u * kv + k]; a29 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 30u * kv + k]; a30 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 31u * kv + k]; a31 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 32u * kv + k]; a32 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 33u * kv + k]; a33 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 34u * kv + k]; a34 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 35u * kv + k]; a35 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 36u * kv + k]; a36 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 37u * kv + k]; a37 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 38u * kv + k]; a38 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 39u * kv + k]; a39 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 40u * kv + k]; a40 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 41u * kv + k]; a41 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 42u * kv + k]; a42 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 43u * kv + k]; a43 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 44u * kv + k]; a44 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 45u * kv + k]; a45 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 46u * kv + k]; a46 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 47u * kv + k]; a47 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 48u * kv + k]; a48 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 49u * kv + k]; a49 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 50u * kv + k]; a50 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 51u * kv + k]; a51 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 52u * kv + k]; a52 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 53u * kv + k]; a53 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 54u * kv + k]; a54 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 55u * kv + k]; a55 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 56u * kv + k]; a56 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 57u * kv + k]; a57 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 58u * kv + k]; a58 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 59u * kv + k]; a59 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 60u * kv + k]; a60 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 61u * kv + k]; a61 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 62u * kv + k]; a62 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
        w = wslab[wb + 63u * kv + k]; a63 += w.x * x0 + w.y * x1 + w.z * x2 + w.w * x3;
    }
    // The last 1..3 columns when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = im2col4(x_base, ci, r, c);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
        a0 += wslab[wb + 0u * kv + k][lane] * xv;
        a1 += wslab[wb + 1u * kv + k][lane] * xv;
        a2 += wslab[wb + 2u * kv + k][lane] * xv;
        a3 += wslab[wb + 3u * kv + k][lane] * xv;
        a4 += wslab[wb + 4u * kv + k][lane] * xv;
        a5 += wslab[wb + 5u * kv + k][lane] * xv;
        a6 += wslab[wb + 6u * kv + k][lane] * xv;
        a7 += wslab[wb + 7u * kv + k][lane] * xv;
        a8 += wslab[wb + 8u * kv + k][lane] * xv;
        a9 += wslab[wb + 9u * kv + k][lane] * xv;
        a10 += wslab[wb + 10u * kv + k][lane] * xv;
        a11 += wslab[wb + 11u * kv + k][lane] * xv;
        a12 += wslab[wb + 12u * kv + k][lane] * xv;
        a13 += wslab[wb + 13u * kv + k][lane] * xv;
        a14 += wslab[wb + 14u * kv + k][lane] * xv;
        a15 += wslab[wb + 15u * kv + k][lane] * xv;
        a16 += wslab[wb + 16u * kv + k][lane] * xv;
        a17 += wslab[wb + 17u * kv + k][lane] * xv;
        a18 += wslab[wb + 18u * kv + k][lane] * xv;
        a19 += wslab[wb + 19u * kv + k][lane] * xv;
        a20 += wslab[wb + 20u * kv + k][lane] * xv;
        a21 += wslab[wb + 21u * kv + k][lane] * xv;
        a22 += wslab[wb + 22u * kv + k][lane] * xv;
        a23 += wslab[wb + 23u * kv + k][lane] * xv;
        a24 += wslab[wb + 24u * kv + k][lane] * xv;
        a25 += wslab[wb + 25u * kv + k][lane] * xv;
        a26 += wslab[wb + 26u * kv + k][lane] * xv;
        a27 += wslab[wb + 27u * kv + k][lane] * xv;
        a28 += wslab[wb + 28u * kv + k][lane] * xv;
        a29 += wslab[wb + 29u * kv + k][lane] * xv;
        a30 += wslab[wb + 30u * kv + k][lane] * xv;
        a31 += wslab[wb + 31u * kv + k][lane] * xv;
        a32 += wslab[wb + 32u * kv + k][lane] * xv;
        a33 += wslab[wb + 33u * kv + k][lane] * xv;
        a34 += wslab[wb + 34u * kv + k][lane] * xv;
        a35 += wslab[wb + 35u * kv + k][lane] * xv;
        a36 += wslab[wb + 36u * kv + k][lane] * xv;
        a37 += wslab[wb + 37u * kv + k][lane] * xv;
        a38 += wslab[wb + 38u * kv + k][lane] * xv;
        a39 += wslab[wb + 39u * kv + k][lane] * xv;
        a40 += wslab[wb + 40u * kv + k][lane] * xv;
        a41 += wslab[wb + 41u * kv + k][lane] * xv;
        a42 += wslab[wb + 42u * kv + k][lane] * xv;
        a43 += wslab[wb + 43u * kv + k][lane] * xv;
        a44 += wslab[wb + 44u * kv + k][lane] * xv;
        a45 += wslab[wb + 45u * kv + k][lane] * xv;
        a46 += wslab[wb + 46u * kv + k][lane] * xv;
        a47 += wslab[wb + 47u * kv + k][lane] * xv;
        a48 += wslab[wb + 48u * kv + k][lane] * xv;
        a49 += wslab[wb + 49u * kv + k][lane] * xv;
        a50 += wslab[wb + 50u * kv + k][lane] * xv;
        a51 += wslab[wb + 51u * kv + k][lane] * xv;
        a52 += wslab[wb + 52u * kv + k][lane] * xv;
        a53 += wslab[wb + 53u * kv + k][lane] * xv;
        a54 += wslab[wb + 54u * kv + k][lane] * xv;
        a55 += wslab[wb + 55u * kv + k][lane] * xv;
        a56 += wslab[wb + 56u * kv + k][lane] * xv;
        a57 += wslab[wb + 57u * kv + k][lane] * xv;
        a58 += wslab[wb + 58u * kv + k][lane] * xv;
        a59 += wslab[wb + 59u * kv + k][lane] * xv;
        a60 += wslab[wb + 60u * kv + k][lane] * xv;
        a61 += wslab[wb + 61u * kv + k][lane] * xv;
        a62 += wslab[wb + 62u * kv + k][lane] * xv;
        a63 += wslab[wb + 63u * kv + k][lane] * xv;
    }

    var acc: array<vec4<f32>, 64u>;
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = a4;
    acc[5] = a5;
    acc[6] = a6;
    acc[7] = a7;
    acc[8] = a8;
    acc[9] = a9;
    acc[10] = a10;
    acc[11] = a11;
    acc[12] = a12;
    acc[13] = a13;
    acc[14] = a14;
    acc[15] = a15;
    acc[16] = a16;
    acc[17] = a17;
    acc[18] = a18;
    acc[19] = a19;
    acc[20] = a20;
    acc[21] = a21;
    acc[22] = a22;
    acc[23] = a23;
    acc[24] = a24;
    acc[25] = a25;
    acc[26] = a26;
    acc[27] = a27;
    acc[28] = a28;
    acc[29] = a29;
    acc[30] = a30;
    acc[31] = a31;
    acc[32] = a32;
    acc[33] = a33;
    acc[34] = a34;
    acc[35] = a35;
    acc[36] = a36;
    acc[37] = a37;
    acc[38] = a38;
    acc[39] = a39;
    acc[40] = a40;
    acc[41] = a41;
    acc[42] = a42;
    acc[43] = a43;
    acc[44] = a44;
    acc[45] = a45;
    acc[46] = a46;
    acc[47] = a47;
    acc[48] = a48;
    acc[49] = a49;
    acc[50] = a50;
    acc[51] = a51;
    acc[52] = a52;
    acc[53] = a53;
    acc[54] = a54;
    acc[55] = a55;
    acc[56] = a56;
    acc[57] = a57;
    acc[58] = a58;
    acc[59] = a59;
    acc[60] = a60;
    acc[61] = a61;
    acc[62] = a62;
    acc[63] = a63;
    let y_base = n * params.cout * plane_out;
    let co0 = params.row0 + rb * 64u;
    for (var m = 0u; m < 64u; m++) {
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
