// Depthwise 3x3 convolution, padding 1, stride s >= 1, no bias (the MobileNet-style baseline
// of docs/design.md §2): every channel is convolved with its own 3x3 filter,
//
//   y[n, c, i, j] = sum over ky, kx of w[c, 0, ky, kx] * x[n, c, i*s + ky - 1, j*s + kx - 1]
//
// with x read as 0 outside the image; y is [N, C, (H-1)/s + 1, (W-1)/s + 1].
//
// One invocation computes PX horizontally adjacent output pixels of one row ("a run") of one
// channel: workgroup_id.x picks WG_SIZE consecutive runs (row-major, ceil(Wo / PX) runs per
// row), workgroup_id.y the channel, workgroup_id.z the image. At stride 1 the six input columns
// a run needs are read once per input row and shared by its pixels.

// With VEC4 (depthwise3x3_vec4.wgsl: stride 1, W divisible by 4; same results and bindings,
// x and y read and written as vec4s), each invocation writes 4 adjacent output pixels j0 ..
// j0+3 of one row (j0 a multiple of 4); per input row it reads the aligned vec4s left of, at
// and right of them.

#import depthwise_params

const WG_SIZE: u32 = 64u;

#bindings
0 params: uniform DepthwiseParams
#endbindings
#ifdef VEC4
alias Elem = vec4<f32>;
#else
alias Elem = f32;
#endif
#bindings
// [N, C, H, W] (as vec4s along the rows with VEC4)
1 x: read Elem
// [C, 1, 3, 3]
2 weight: read f32
// [N, C, Ho, Wo] (as vec4s with VEC4)
3 y: read_write Elem
#endbindings
#ifdef VEC4

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
#else
// Output pixels per invocation; the Rust side uses the same number (`PX`).
const PX: u32 = 4u;

#import tap

// One filter row (weights a, b, c) applied at input row `row` to the PX pixels whose leftmost
// tap is column `col` (stride 1).
fn row_contribution(base: u32, row: i32, col: i32, a: f32, b: f32, c: f32) -> vec4<f32> {
    let t0 = tap(base, row, col);
    let t1 = tap(base, row, col + 1);
    let t2 = tap(base, row, col + 2);
    let t3 = tap(base, row, col + 3);
    let t4 = tap(base, row, col + 4);
    let t5 = tap(base, row, col + 5);
    return a * vec4<f32>(t0, t1, t2, t3) + b * vec4<f32>(t1, t2, t3, t4) + c * vec4<f32>(t2, t3, t4, t5);
}

// One output pixel whose top-left tap is (row, col), any stride.
fn pixel(base: u32, row: i32, col: i32, k: u32) -> f32 {
    var v = 0.0;
    for (var ky = 0; ky < 3; ky++) {
        for (var kx = 0; kx < 3; kx++) {
            v += weight[k + u32(ky * 3 + kx)] * tap(base, row + ky, col + kx);
        }
    }
    return v;
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let run = wg.x * WG_SIZE + li;
    let i = run / params.runs_per_row;
    if (i >= params.ho) {
        return;
    }
    let j0 = (run % params.runs_per_row) * PX;
    let c = wg.y;
    let n = wg.z;
    let base = (n * params.c + c) * params.h * params.w;
    let k = c * 9u;
    let s = params.stride;
    let row = i32(i * s) - 1;
    var acc: vec4<f32>;
    if (s == 1u) {
        let col = i32(j0) - 1;
        acc = row_contribution(base, row, col, weight[k], weight[k + 1u], weight[k + 2u])
            + row_contribution(base, row + 1, col, weight[k + 3u], weight[k + 4u], weight[k + 5u])
            + row_contribution(base, row + 2, col, weight[k + 6u], weight[k + 7u], weight[k + 8u]);
    } else {
        let col = i32(j0 * s) - 1;
        let step = i32(s);
        acc = vec4<f32>(
            pixel(base, row, col, k),
            pixel(base, row, col + step, k),
            pixel(base, row, col + 2 * step, k),
            pixel(base, row, col + 3 * step, k),
        );
    }
    let out = (n * params.c + c) * params.ho * params.wo + i * params.wo + j0;
    y[out] = acc.x;
    if (j0 + 1u < params.wo) {
        y[out + 1u] = acc.y;
    }
    if (j0 + 2u < params.wo) {
        y[out + 2u] = acc.z;
    }
    if (j0 + 3u < params.wo) {
        y[out + 3u] = acc.w;
    }
}
#endif
