// Gradient of the 3x3 convolution (pad 1, stride s, no bias) with respect to its input: the
// transposed convolution. CPU twin: `train::ops::conv3x3_backward_input`.
//
//   dX[n, ci, iy, ix] = sum over co, ky, kx of W[co, ci, ky, kx] * dY[n, co, oy, ox]
//
// over the output pixels that read (iy, ix): oy * s + ky - 1 = iy and ox * s + kx - 1 = ix,
// with 0 <= oy < Ho and 0 <= ox < Wo. One invocation per input-gradient element (a 2-d grid of
// workgroups: linear index wg.y * groups.x + wg.x); every element is written (0 where no
// output pixel read it).

#import conv3x3_params
#import element

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform Conv3x3Params
// [N, Cout, Ho, Wo]
1 dy: read f32
// [Cout, Cin, 3, 3]
2 weight: read f32
// [N, Cin, H, W]
3 dx: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE)
fn main(
#include element_args
) {
    let idx = element(wg, groups, li);
    let plane = params.h * params.w;
    if (idx >= params.n * params.cin * plane) {
        return;
    }
    let ix = idx % params.w;
    let iy = (idx / params.w) % params.h;
    let ci = (idx / plane) % params.cin;
    let n = idx / (plane * params.cin);
    var acc = 0.0;
    for (var ky = 0u; ky < 3u; ky++) {
        // oy * s = iy + 1 - ky (unsigned: a negative value wraps past every bound below).
        let ty = iy + 1u - ky;
        let oy = ty / params.stride;
        if (ty > iy + 1u || oy * params.stride != ty || oy >= params.ho) {
            continue;
        }
        for (var kx = 0u; kx < 3u; kx++) {
            let tx = ix + 1u - kx;
            let ox = tx / params.stride;
            if (tx > ix + 1u || ox * params.stride != tx || ox >= params.wo) {
                continue;
            }
            for (var co = 0u; co < params.cout; co++) {
                let g = dy[((n * params.cout + co) * params.ho + oy) * params.wo + ox];
                acc += weight[((co * params.cin + ci) * 3u + ky) * 3u + kx] * g;
            }
        }
    }
    dx[idx] = acc;
}
