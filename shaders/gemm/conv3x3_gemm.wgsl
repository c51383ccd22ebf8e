// 3x3 convolution, padding 1, any stride, no bias, as a GEMM whose input tile is read through
// im2col on the fly (the stem of the networks): the register-tiled GEMM of conv1x1_reg.wgsl with
// K = 9 * Cin, input channel k = 9 * ci + 3 * ky + kx reading x[n, ci, i*s + ky - 1, j*s + kx - 1]
// (0 outside the image). The weight [Cout, Cin, 3, 3] is the [Cout, 9 * Cin] matrix packed by
// conv1x1_pack.wgsl; same dispatches as the other packed GEMMs (no epilogue is used).
//
//   y[n, co, i, j] = sum over ci, ky, kx of w[co, ci, ky, kx] * x[n, ci, i*s + ky - 1, j*s + kx - 1]

#import gemm_params
#import gemm_store_scalar

@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W]
@group(0) @binding(1) var<storage, read> x: array<f32>;
#import gemm_slab
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

    {{decl}}
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let x0 = im2col4(x_base, ci, r, c);
        let x1 = im2col4(x_base, ci + 1u, r, c);
        let x2 = im2col4(x_base, ci + 2u, r, c);
        let x3 = im2col4(x_base, ci + 3u, r, c);
        let k = (ci - params.k0) / 4u;
        {{rows4}}
    }
    // The last 1..3 columns when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = im2col4(x_base, ci, r, c);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
        {{rows1}}
    }

#include gemm_epilogue_scalar
