// Gradient of the 3x3 convolution (pad 1, stride s, no bias: the stem) with respect to its
// weights. CPU twin: `train::ops::conv3x3_backward_weight`.
//
//   dW[co, ci, ky, kx] = sum over n, oy, ox of dY[n, co, oy, ox] * X[n, ci, oy*s + ky - 1, ox*s + kx - 1]
//
// with X = 0 outside the image. One workgroup per (co, ci) pair (the stem has few), its
// invocations walking the N * Ho * Wo terms in a fixed stride for all 9 taps and adding their
// partial sums in a fixed tree: the same result on every run. Workgroups form a 2-d grid
// (linear index wg.y * groups.x + wg.x); surplus workgroups write nothing.

#import conv3x3_params

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform Conv3x3Params
// [N, Cout, Ho, Wo]
1 dy: read f32
// [N, Cin, H, W]
2 x: read f32
// [Cout, Cin, 3, 3]
3 dw: read_write f32
#endbindings

// part[t * WG_SIZE + li]: invocation li's partial sum of tap t.
var<workgroup> part: array<f32, 2304>;

@compute @workgroup_size(WG_SIZE)
fn main(
#include element_args
) {
    // Workgroup (co, ci) computes the 9 taps of the pair: each term reads dY once.
    let wid = wg.y * groups.x + wg.x;
    let live = wid < params.cout * params.cin;
    let co = wid / params.cin;
    let ci = wid % params.cin;
    let out_plane = params.ho * params.wo;
    let terms = select(0u, params.n * out_plane, live);
    // Term k = li + m * WG_SIZE is (n, oy, ox); found once by division, then moved along by
    // WG_SIZE in mixed radix without dividing.
    var n = li / out_plane;
    var oy = (li % out_plane) / params.wo;
    var ox = li % params.wo;
    let dn = WG_SIZE / out_plane;
    let doy = (WG_SIZE % out_plane) / params.wo;
    let dox = WG_SIZE % params.wo;
    var acc: array<f32, 9>;
    for (var k = li; k < terms; k = k + WG_SIZE) {
        let g = dy[((n * params.cout + co) * params.ho + oy) * params.wo + ox];
        let base = (n * params.cin + ci) * params.h;
        for (var ky = 0u; ky < 3u; ky++) {
            // Row oy*s + ky - 1 (unsigned: -1 wraps past h and fails the bound).
            let iy = oy * params.stride + ky - 1u;
            if (iy >= params.h) {
                continue;
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let ix = ox * params.stride + kx - 1u;
                if (ix < params.w) {
                    acc[ky * 3u + kx] += g * x[(base + iy) * params.w + ix];
                }
            }
        }
        ox += dox;
        var carry = 0u;
        if (ox >= params.wo) {
            ox -= params.wo;
            carry = 1u;
        }
        oy += doy + carry;
        carry = 0u;
        if (oy >= params.ho) {
            oy -= params.ho;
            carry = 1u;
        }
        n += dn + carry;
    }
    for (var t = 0u; t < 9u; t++) {
        part[t * WG_SIZE + li] = acc[t];
    }
    workgroupBarrier();
    for (var half = WG_SIZE / 2u; half > 0u; half = half / 2u) {
        if (li < half) {
            for (var t = 0u; t < 9u; t++) {
                part[t * WG_SIZE + li] += part[t * WG_SIZE + li + half];
            }
        }
        workgroupBarrier();
    }
    if (live && li < 9u) {
        dw[wid * 9u + li] = part[li * WG_SIZE];
    }
}
