// Depthwise 3x3 convolution, padding 1, stride 1, W divisible by 4: the vectorised twin of
// depthwise3x3.wgsl (same results and bindings, x and y read and written as vec4s). Each
// invocation writes 4 adjacent output pixels j0 .. j0+3 of one row (j0 a multiple of 4); per
// input row it reads the aligned vec4s left of, at and right of them.
//
//   y[n, c, i, j] = sum over ky, kx of w[c, 0, ky, kx] * x[n, c, i + ky - 1, j + kx - 1]

#import depthwise_params

const WG_SIZE: u32 = 64u;

@group(0) @binding(0) var<uniform> params: DepthwiseParams;
// [N, C, H, W] as vec4s along the rows.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
// [C, 1, 3, 3]
@group(0) @binding(2) var<storage, read> weight: array<f32>;
// [N, C, H, W] as vec4s.
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

// Filter row (a, b, c) applied at input row `r` to the 4 pixels of vec4 column `blk`.
fn row_contribution(base4: u32, r: i32, blk: i32, a: f32, b: f32, c: f32) -> vec4<f32> {
    let w4 = i32(params.w / 4u);
    if (r < 0 || r >= i32(params.h)) {
        return vec4<f32>(0.0);
    }
    let row = base4 + u32(r) * u32(w4);
    let z = vec4<f32>(0.0);
    let mid = x[row + u32(blk)];
    let left = select(z, x[row + u32(max(blk - 1, 0))], blk > 0);
    let right = select(z, x[row + u32(min(blk + 1, w4 - 1))], blk + 1 < w4);
    let l = vec4<f32>(left.w, mid.xyz);
    let rr = vec4<f32>(mid.yzw, right.x);
    return a * l + b * mid + c * rr;
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.y;
    let n = wg.z;
    let plane4 = params.h * params.w / 4u;
    let q = wg.x * WG_SIZE + li;
    if (q >= plane4) {
        return;
    }
    let w4 = params.w / 4u;
    let i = i32(q / w4);
    let blk = i32(q % w4);
    let base4 = (n * params.c + c) * plane4;
    let k = c * 9u;
    y[base4 + q] = row_contribution(base4, i - 1, blk, weight[k], weight[k + 1u], weight[k + 2u])
        + row_contribution(base4, i, blk, weight[k + 3u], weight[k + 4u], weight[k + 5u])
        + row_contribution(base4, i + 1, blk, weight[k + 6u], weight[k + 7u], weight[k + 8u]);
}
