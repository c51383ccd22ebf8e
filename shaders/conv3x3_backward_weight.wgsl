// Gradient of the 3x3 convolution (pad 1, stride s, no bias: the stem) with respect to its
// weights. CPU twin: `train::ops::conv3x3_backward_weight`.
//
//   dW[co, ci, ky, kx] = sum over n, oy, ox of dY[n, co, oy, ox] * X[n, ci, oy*s + ky - 1, ox*s + kx - 1]
//
// with X = 0 outside the image. One workgroup per weight (the stem has few: Cout * Cin * 9),
// its invocations walking the N * Ho * Wo terms in a fixed stride and adding their partial sums
// in a fixed tree: the same result on every run. Workgroups form a 2-d grid (linear index
// wg.y * groups.x + wg.x); surplus workgroups return at once.

// Mirrors `Conv3x3GradParams` in src/gpu/kernels/training.rs.
struct Conv3x3GradParams {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
}

const WG_SIZE: u32 = 256u;

@group(0) @binding(0) var<uniform> params: Conv3x3GradParams;
// [N, Cout, Ho, Wo]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
// [N, Cin, H, W]
@group(0) @binding(2) var<storage, read> x: array<f32>;
// [Cout, Cin, 3, 3]
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

var<workgroup> part: array<f32, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let wid = wg.y * groups.x + wg.x;
    if (wid >= params.cout * params.cin * 9u) {
        return;
    }
    let co = wid / (params.cin * 9u);
    let ci = (wid / 9u) % params.cin;
    let ky = i32((wid % 9u) / 3u) - 1;
    let kx = i32(wid % 3u) - 1;
    let out_plane = params.ho * params.wo;
    let terms = params.n * out_plane;
    var s = 0.0;
    for (var k = li; k < terms; k = k + WG_SIZE) {
        let n = k / out_plane;
        let q = k % out_plane;
        let iy = i32((q / params.wo) * params.stride) + ky;
        let ix = i32((q % params.wo) * params.stride) + kx;
        if (iy >= 0 && iy < i32(params.h) && ix >= 0 && ix < i32(params.w)) {
            let xi = ((n * params.cin + ci) * params.h + u32(iy)) * params.w + u32(ix);
            s = s + dy[(n * params.cout + co) * out_plane + q] * x[xi];
        }
    }
    part[li] = s;
    workgroupBarrier();
    for (var half = WG_SIZE / 2u; half > 0u; half = half / 2u) {
        if (li < half) {
            part[li] = part[li] + part[li + half];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        dw[wid] = part[0];
    }
}
