// 1x1 convolution, the naive GEMM: one invocation per output value, every operand read from
// storage, no reuse. The baseline the tiled variants are measured against; same bindings,
// parameters and epilogue as conv1x1.wgsl:
//
//   Y[n, co, p] = epilogue(sum_ci W[co, ci] * X[n, ci, src(p)]),  src(i, j) = (i*s, j*s).

#import conv1x1_params
#import gemm_store_scalar

const WG_SIZE: u32 = 64u;

@group(0) @binding(0) var<uniform> params: Conv1x1Params;
// [N, Cin, H, W]
@group(0) @binding(1) var<storage, read> x: array<f32>;
// [Cout, Cin]
@group(0) @binding(2) var<storage, read> weight: array<f32>;
// [Cout] each; bound to a placeholder when the affine flag is off.
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// [N, Cout, Ho, Wo]; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<f32>;
// [N, Cout, Ho, Wo]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
#import conv1x1_input

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let p = gid.x;
    let co = wg.y;
    let n = wg.z;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    if (p >= plane_out) {
        return;
    }
    let src = (p / params.wo) * params.stride * params.w + (p % params.wo) * params.stride;
    let x_base = n * params.cin * plane_in + src;
    var v = 0.0;
    for (var ci = 0u; ci < params.cin; ci++) {
        v += weight[co * params.cin + ci] * input(x[x_base + ci * plane_in], ci);
    }
    store_output((n * params.cout + co) * plane_out + p, co, v);
}
