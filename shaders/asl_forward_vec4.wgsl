// Active Shift Layer, forward, stride 1 and W divisible by 4: the vectorised twin of
// asl_forward.wgsl (same results and shift rules). Each invocation writes 4 adjacent output
// pixels j0 .. j0+3 of one row (j0 a multiple of 4) as one vec4; their taps lie in two aligned
// vec4s of each of the two input rows involved, so 4 vec4 loads replace 16 scalar ones.
//
//   out[n, c, i, j] = bilinear sample of x[n, c] at row i + ypos[c], column j + xpos[c],
//                     each of the four taps reading 0 outside the image.
//
// workgroup_id.y is the channel, workgroup_id.z the image.

#import asl_params

const WG_SIZE: u32 = 64u;
#import shift

@group(0) @binding(0) var<uniform> params: AslParams;
// [N, C, H, W] as vec4s along the rows.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
// [2, C]: xpos (horizontal) for every channel, then ypos (vertical).
@group(0) @binding(2) var<storage, read> shift: array<f32>;
// [N, C, H, W] as vec4s.
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

#import row_lerp

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
    let base4 = (n * params.c + c) * plane4;
    let xs = shift[c];
    let ys = shift[params.c + c];
    if (shift_is_nan(xs) || shift_is_nan(ys)) {
        out[base4 + q] = vec4<f32>(0.0);
        return;
    }
    let xp = limit_shift(xs);
    let yp = limit_shift(ys);
    let fx = floor(xp);
    let fy = floor(yp);
    let tx = xp - fx;
    let ty = yp - fy;
    let p0 = q * 4u;
    let i = i32(p0 / params.w);
    let col = i32(p0 % params.w) + i32(fx);
    let o = ((col % 4) + 4) % 4;
    let blk = (col - o) / 4;
    let r = i + i32(fy);
    out[base4 + q] = (1.0 - ty) * row_lerp(base4, r, blk, o, tx) + ty * row_lerp(base4, r + 1, blk, o, tx);
}
