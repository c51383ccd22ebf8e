// Active Shift Layer, gradient with respect to the shift parameters (docs/design.md §1):
//
//   dxpos[c] = sum over n, i, j of dout * ((1-ty)(q01-q00) + ty (q11-q10))
//   dypos[c] = sum over n, i, j of dout * ((1-tx)(q10-q00) + tx (q11-q01))
//
// A fixed-order two-pass reduction, so the result is bitwise identical from run to run:
// `partial_sums` gives every (chunk of CHUNK positions, channel) pair to one workgroup, which
// reduces it by a tree in workgroup memory; `finish` gives every channel to one workgroup,
// which reduces that channel's partial sums the same way.

#import asl_params

const WG_SIZE: u32 = 256u;
const PER_INVOCATION: u32 = 16u;
// Positions per chunk; the Rust side uses the same number (`ASL_SHIFT_CHUNK`).
const CHUNK: u32 = WG_SIZE * PER_INVOCATION;
#import shift

#bindings
0 params: uniform AslParams
1 x: read f32
2 dout: read f32
// [2, C]: xpos then ypos.
3 shift: read f32
// [C, chunks, 2]: per-chunk sums of dxpos and dypos.
4 partials: read_write f32
// [2, C]: dxpos then dypos.
5 grad: read_write f32
#endbindings

var<workgroup> sh_gx: array<f32, WG_SIZE>;
var<workgroup> sh_gy: array<f32, WG_SIZE>;

#import tap

// Tree reduction of sh_gx / sh_gy; the result is in element 0. Call from uniform control flow.
fn reduce_workgroup(li: u32) {
    for (var width = WG_SIZE / 2u; width > 0u; width = width / 2u) {
        workgroupBarrier();
        if (li < width) {
            sh_gx[li] += sh_gx[li + width];
            sh_gy[li] += sh_gy[li + width];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(WG_SIZE)
fn partial_sums(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let chunk = wg.x;
    let c = wg.y;
    let plane_out = params.ho * params.wo;
    let total = params.n * plane_out;

#include channel_shift
    let ix = i32(fx);
    let iy = i32(fy);

    // The invocation's PER_INVOCATION consecutive positions: (n, i, j) found once by division,
    // then moved along the row.
    let e0 = chunk * CHUNK + li * PER_INVOCATION;
    let e1 = min(total, e0 + PER_INVOCATION);
    var n = e0 / plane_out;
    var i = (e0 % plane_out) / params.wo;
    var j = e0 % params.wo;
    var gx = 0.0;
    var gy = 0.0;
    for (var e = e0; e < e1 && live; e++) {
        let row = i32(i * params.stride) + iy;
        let col = i32(j * params.stride) + ix;
        let base = (n * params.c + c) * params.h * params.w;
        let q00 = tap(base, row, col);
        let q01 = tap(base, row, col + 1);
        let q10 = tap(base, row + 1, col);
        let q11 = tap(base, row + 1, col + 1);
        let g = dout[(n * params.c + c) * plane_out + i * params.wo + j];
        gx += g * ((1.0 - ty) * (q01 - q00) + ty * (q11 - q10));
        gy += g * ((1.0 - tx) * (q10 - q00) + tx * (q11 - q01));
        j += 1u;
        if (j == params.wo) {
            j = 0u;
            i += 1u;
            if (i == params.ho) {
                i = 0u;
                n += 1u;
            }
        }
    }
    sh_gx[li] = gx;
    sh_gy[li] = gy;
    reduce_workgroup(li);
    if (li == 0u) {
        let slot = (c * params.chunks + chunk) * 2u;
        partials[slot] = sh_gx[0];
        partials[slot + 1u] = sh_gy[0];
    }
}

@compute @workgroup_size(WG_SIZE)
fn finish(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.x;
    var gx = 0.0;
    var gy = 0.0;
    for (var k = li; k < params.chunks; k += WG_SIZE) {
        let slot = (c * params.chunks + k) * 2u;
        gx += partials[slot];
        gy += partials[slot + 1u];
    }
    sh_gx[li] = gx;
    sh_gy[li] = gy;
    reduce_workgroup(li);
    if (li == 0u) {
        grad[c] = sh_gx[0];
        grad[params.c + c] = sh_gy[0];
    }
}
