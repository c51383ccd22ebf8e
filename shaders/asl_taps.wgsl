// The per-channel taps of an Active Shift Layer, for the fused ASL + 1x1 GEMM
// (asl_conv1x1.wgsl): taps[c] = (floor(xpos), floor(ypos), xpos - floor(xpos),
// ypos - floor(ypos)) with the shift rules of asl_forward.wgsl (±Inf and values beyond ±2^20
// clamped to ±2^20). A channel with a NaN xpos or ypos gets integer offsets of -2^22, which put
// all four taps outside any image, and zero fractions: it contributes 0.

// Its Rust twin `TapsParams` is generated from this by build.rs (from naga\'s layout).
struct TapsParams {
    c: u32,
    // Where taps start in `out`, in floats.
    offset: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG_SIZE: u32 = 64u;
#import shift

const DEAD: f32 = -4194304.0;

#bindings
0 params: uniform TapsParams
// [2, C]: xpos for every channel, then ypos.
1 shift: read f32
2 out: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= params.c) {
        return;
    }
    let o = params.offset + 4u * c;
    let xs = shift[c];
    let ys = shift[params.c + c];
    if (shift_is_nan(xs) || shift_is_nan(ys)) {
        out[o] = DEAD;
        out[o + 1u] = DEAD;
        out[o + 2u] = 0.0;
        out[o + 3u] = 0.0;
        return;
    }
    let xp = limit_shift(xs);
    let yp = limit_shift(ys);
    let fx = floor(xp);
    let fy = floor(yp);
    out[o] = fx;
    out[o + 1u] = fy;
    out[o + 2u] = xp - fx;
    out[o + 3u] = yp - fy;
}
