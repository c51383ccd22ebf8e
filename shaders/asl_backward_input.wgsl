// Active Shift Layer, gradient with respect to the input (docs/design.md §1).
//
// The exact transpose of asl_forward, written as a gather so it needs no atomics and is
// deterministic: input pixel (p, q) collects from the (at most four) output pixels whose taps
// land on it. Tap (a, b) of output (i, j) reads (i*s + fy + a, j*s + fx + b), so
// i = (p - fy - a) / s must be an exact integer in [0, Ho) (likewise for j).

#import asl_params

const WG_SIZE: u32 = 256u;
#import shift

@group(0) @binding(0) var<uniform> params: AslParams;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
// [2, C]: xpos then ypos.
@group(0) @binding(2) var<storage, read> shift: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// Output index along one axis that tap `a` of it lands on input coordinate `p`, or -1.
fn source_index(p: i32, f: i32, a: i32, extent: u32) -> i32 {
    let d = p - f - a;
    if (d < 0) {
        return -1;
    }
    var i = d;
    // Stride 1 (most layers) needs no division.
    if (params.stride != 1u) {
        let s = i32(params.stride);
        if (d % s != 0) {
            return -1;
        }
        i = d / s;
    }
    if (i >= i32(extent)) {
        return -1;
    }
    return i;
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

    let live = !(shift_is_nan(shift[c]) || shift_is_nan(shift[params.c + c]));
    let xp = limit_shift(shift[c]);
    let yp = limit_shift(shift[params.c + c]);
    let fx = floor(xp);
    let fy = floor(yp);
    let tx = xp - fx;
    let ty = yp - fy;
    let ix = i32(fx);
    let iy = i32(fy);

    let out_base = (n * params.c + c) * params.ho * params.wo;
    var acc = 0.0;
    for (var a = 0; a < 2 && live; a++) {
        let i = source_index(p, iy, a, params.ho);
        if (i < 0) {
            continue;
        }
        let wy = select(1.0 - ty, ty, a == 1);
        for (var b = 0; b < 2; b++) {
            let j = source_index(q, ix, b, params.wo);
            if (j < 0) {
                continue;
            }
            let wx = select(1.0 - tx, tx, b == 1);
            acc += wy * wx * dout[out_base + u32(i) * params.wo + u32(j)];
        }
    }
    dx[(n * params.c + c) * params.h * params.w + idx] = acc;
}
