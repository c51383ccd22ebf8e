// The Active Shift Layer fused into the following 1x1 convolution, stride 1 and W divisible by
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

#import gemm_params

@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W] as vec4s along the rows.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#import gemm_slab
// [N, Cout, H, W] as vec4s; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<vec4<f32>>;
// [N, Cout, H, W] as vec4s.
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>;
// Per input channel: (floor(xpos), floor(ypos), xpos - floor(xpos), ypos - floor(ypos)).
@group(0) @binding(7) var<uniform> taps: array<vec4<f32>, 4096>;

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

    {{decl}}
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let b0 = x_base + ci * plane4;
        let x0 = shifted4(b0, ci, i, j0);
        let x1 = shifted4(b0 + plane4, ci + 1u, i, j0);
        let x2 = shifted4(b0 + 2u * plane4, ci + 2u, i, j0);
        let x3 = shifted4(b0 + 3u * plane4, ci + 3u, i, j0);
        let k = (ci - params.k0) / 4u;
        {{rows4}}
    }
    // The last 1..3 input channels when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = shifted4(x_base + ci * plane4, ci, i, j0);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
        {{rows1}}
    }

#include gemm_epilogue_vec4
