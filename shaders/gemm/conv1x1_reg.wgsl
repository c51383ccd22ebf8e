// 1x1 convolution with stride, any shape: the general register-tiled GEMM (the variant for
// shapes conv1x1_vec4.wgsl does not take). Same packed weights, dispatches and epilogue as
// conv1x1_vec4.wgsl, but pixels are read one by one (strided source, any plane size):
//
//   Y[n, co, p] = epilogue(sum_ci W[co, ci] * X[n, ci, src(p)]),  src(i, j) = (i*s, j*s).
//
// Each invocation owns 4 consecutive output pixels and ROWS output channels.

#import gemm_params
#import gemm_store_scalar

@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W]
@group(0) @binding(1) var<storage, read> x: array<f32>;
#import gemm_slab
// [N, Cout, Ho, Wo]; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<f32>;
// [N, Cout, Ho, Wo]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
#import gemm_whole

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
#ifdef whole
    // Invocation g of the image owns pixels 4g .. 4g + 3 of row block wg.y (ROWS output channels).
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = wg.y;
    let p0 = g * 4u;
    if (g >= groups || rb * ROWS >= params.nrows) {
        return;
    }
#else
    // Invocation g of the image owns pixels 4q .. 4q + 3 of row block rb (ROWS output channels).
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = g / groups;
    let p0 = (g % groups) * 4u;
    if (rb * ROWS >= params.nrows) {
        return;
    }
#endif
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

    {{decl}}
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
        {{rows4}}
    }
    // The last 1..3 input channels when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let b = x_base + ci * plane_in;
        let xv = input4(vec4<f32>(x[b + s0], x[b + s1], x[b + s2], x[b + s3]), ci);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
        {{rows1}}
    }

#include gemm_epilogue_scalar
