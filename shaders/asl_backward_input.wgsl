// Active Shift Layer, gradient with respect to the input (docs/design.md §1).
//
// The exact transpose of asl_forward, written as a gather so it needs no atomics and is
// deterministic: input pixel (p, q) collects from the (at most four) output pixels whose taps
// land on it. Tap (a, b) of output (i, j) reads (i*s + fy + a, j*s + fx + b), so
// i = (p - fy - a) / s must be an exact integer in [0, Ho) (likewise for j). At stride 1 that
// is the bilinear sampling of dout at the negated shift, computed as such.

#import asl_params

const WG_SIZE: u32 = 256u;
#import shift

#bindings
0 params: uniform AslParams
1 dout: read f32
// [2, C]: xpos then ypos.
2 shift: read f32
3 dx: read_write f32
#endbindings

// dout[n, c] (the plane starting at `base`) at row `row`, column `col`; 0 outside it.
fn dout_tap(base: u32, row: i32, col: i32) -> f32 {
    if (row < 0 || col < 0 || row >= i32(params.ho) || col >= i32(params.wo)) {
        return 0.0;
    }
    return dout[base + u32(row) * params.wo + u32(col)];
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.y;
    let n = wg.z;
    let idx = wg.x * WG_SIZE + li;
    if (idx >= params.h * params.w) {
        return;
    }
    let p = i32(idx / params.w);
    let q = i32(idx % params.w);

#include channel_shift
    let ix = i32(fx);
    let iy = i32(fy);

    let out_base = (n * params.c + c) * params.ho * params.wo;
    var acc = 0.0;
    if (params.stride == 1u) {
        // At stride 1 the transpose is the same bilinear sampling of dout at (p - ypos, q -
        // xpos): the taps of the negated shift are the output pixels that read (p, q), with
        // the same weights.
        if (live) {
            let gx = floor(-xp);
            let gy = floor(-yp);
            let ux = -xp - gx;
            let uy = -yp - gy;
            let row = p + i32(gy);
            let col = q + i32(gx);
            let top = (1.0 - ux) * dout_tap(out_base, row, col) + ux * dout_tap(out_base, row, col + 1);
            let bottom = (1.0 - ux) * dout_tap(out_base, row + 1, col)
                + ux * dout_tap(out_base, row + 1, col + 1);
            acc = (1.0 - uy) * top + uy * bottom;
        }
        dx[(n * params.c + c) * params.h * params.w + idx] = acc;
        return;
    }
    // At stride s >= 2 at most one tap per axis lands on (p, q): with d = p - fy = i*s + a,
    // tap a = d mod s (when that is 0 or 1) of output row i = d / s; one division per axis.
    let s = params.stride;
    let dr = p - iy;
    let dc = q - ix;
    if (live && dr >= 0 && dc >= 0) {
        let i = u32(dr) / s;
        let a = u32(dr) - i * s;
        let j = u32(dc) / s;
        let b = u32(dc) - j * s;
        if (a < 2u && b < 2u && i < params.ho && j < params.wo) {
            let wy = select(1.0 - ty, ty, a == 1u);
            let wx = select(1.0 - tx, tx, b == 1u);
            acc = wy * wx * dout[out_base + i * params.wo + j];
        }
    }
    dx[(n * params.c + c) * params.h * params.w + idx] = acc;
}
