// 1x1 convolution as a register-tiled GEMM without workgroup memory (the variant for CPU-like
// adapters such as lavapipe, where every invocation-varying load is a gather and barriers are
// costly). Same bindings, parameters and epilogue as conv1x1.wgsl:
//
//   Y[n, co, p] = epilogue(sum_ci W[co, ci] * X[n, ci, src(p)]),  src(i, j) = (i*s, j*s).
//
// Each invocation owns one output pixel and CO_BLOCK consecutive output channels. The output
// channels of a workgroup come from workgroup_id, so every weight load has the same address in
// all invocations (a broadcast), and each input load feeds CO_BLOCK multiply-adds.

// Mirrors `Conv1x1Params` in src/gpu/kernels/conv1x1.rs.
struct Conv1x1Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
    // bit 0: affine, bit 1: residual add, bit 2: ReLU.
    flags: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG_SIZE: u32 = 64u;
const CO_BLOCK: u32 = 16u;
const FLAG_AFFINE: u32 = 1u;
const FLAG_RESIDUAL: u32 = 2u;
const FLAG_RELU: u32 = 4u;

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

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let co0 = wg.y * CO_BLOCK;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    let p = wg.x * WG_SIZE + li;
    // Out-of-range pixels compute on a valid one and write nothing.
    let pc = min(p, plane_out - 1u);
    let src = (pc / params.wo) * params.stride * params.w + (pc % params.wo) * params.stride;
    let x_base = n * params.cin * plane_in + src;
    // Rows past Cout repeat the last row (uniform: the same for the whole workgroup).
    let last = params.cout - 1u;
    var row: array<u32, CO_BLOCK>;
    for (var m = 0u; m < CO_BLOCK; m++) {
        row[m] = min(co0 + m, last) * params.cin;
    }

    var acc: array<f32, CO_BLOCK>;
    for (var ci = 0u; ci < params.cin; ci++) {
        let xv = x[x_base + ci * plane_in];
        for (var m = 0u; m < CO_BLOCK; m++) {
            acc[m] = fma(weight[row[m] + ci], xv, acc[m]);
        }
    }

    if (p >= plane_out) {
        return;
    }
    let y_base = n * params.cout * plane_out + p;
    for (var m = 0u; m < CO_BLOCK; m++) {
        let co = co0 + m;
        if (co >= params.cout) {
            break;
        }
        let idx = y_base + co * plane_out;
        var v = acc[m];
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
