// Active Shift Layer, forward (docs/design.md §1).
//
//   out[n, c, i, j] = bilinear sample of x[n, c] at row i*s + ypos[c], column j*s + xpos[c],
//                     each of the four taps reading 0 outside the image.
//
// One invocation per output pixel; workgroup_id.y is the channel, workgroup_id.z the image, so
// every invocation of a workgroup shares one shift. `main` runs 256 invocations per workgroup,
// `main_small` 64, for planes of at most 192 pixels (a 7x7 plane would leave 207 of 256
// invocations idle, which a CPU adapter still steps through).

#import asl_params

const WG_SIZE: u32 = 256u;
#import shift

@group(0) @binding(0) var<uniform> params: AslParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// [2, C]: xpos (horizontal) for every channel, then ypos (vertical).
@group(0) @binding(2) var<storage, read> shift: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

#import tap

// Output pixel idx of channel c of image n.
fn forward_at(c: u32, n: u32, idx: u32) {
    if (idx >= params.ho * params.wo) {
        return;
    }
    let i = idx / params.wo;
    let j = idx % params.wo;

    let live = !(shift_is_nan(shift[c]) || shift_is_nan(shift[params.c + c]));
    let xp = limit_shift(shift[c]);
    let yp = limit_shift(shift[params.c + c]);
    let fx = floor(xp);
    let fy = floor(yp);
    let tx = xp - fx;
    let ty = yp - fy;
    if (!live) {
        out[(n * params.c + c) * params.ho * params.wo + idx] = 0.0;
        return;
    }

    let row = i32(i * params.stride) + i32(fy);
    let col = i32(j * params.stride) + i32(fx);
    let base = (n * params.c + c) * params.h * params.w;
    let q00 = tap(base, row, col);
    let q01 = tap(base, row, col + 1);
    let q10 = tap(base, row + 1, col);
    let q11 = tap(base, row + 1, col + 1);

    let top = (1.0 - tx) * q00 + tx * q01;
    let bottom = (1.0 - tx) * q10 + tx * q11;
    out[(n * params.c + c) * params.ho * params.wo + idx] = (1.0 - ty) * top + ty * bottom;
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    forward_at(wg.y, wg.z, wg.x * WG_SIZE + li);
}

@compute @workgroup_size(64)
fn main_small(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    forward_at(wg.y, wg.z, wg.x * 64u + li);
}
