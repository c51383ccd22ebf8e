// Per-channel sum over images and pixels: out[c] = sum over n, p of x[n, c, p] for x
// [N, C, H*W]. The gradient of a bias (the sum of the output gradient per channel) and the
// batch's loss totals (per-image (loss, right) pairs as [N, 2, 1, 1]). CPU twin:
// `train::ops::channel_sum`.
//
// One workgroup per channel (a 2-d grid: linear index wg.y * groups.x + wg.x; surplus
// workgroups write nothing): every invocation sums a fixed, strided subset of the channel and
// the workgroup adds the partial sums in a fixed tree, so the result is the same on every run.

// Its Rust twin `ChannelSumParams` is generated from this by build.rs (from naga's layout).
struct ChannelSumParams {
    n: u32,
    c: u32,
    // H * W.
    plane: u32,
    _pad: u32,
}

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform ChannelSumParams
// [N, C, H, W]
1 x: read f32
// [C]
2 out: read_write f32
#endbindings

var<workgroup> sh_part: array<f32, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn main(
#include element_args
) {
    let c = wg.y * groups.x + wg.x;
    let live = c < params.c;
    let m = select(0u, params.n * params.plane, live);
    var s = 0.0;
    for (var k = li; k < m; k = k + WG_SIZE) {
        let n = k / params.plane;
        let p = k % params.plane;
        s = s + x[(n * params.c + c) * params.plane + p];
    }
    sh_part[li] = s;
    workgroupBarrier();
    for (var half = WG_SIZE / 2u; half > 0u; half = half / 2u) {
        if (li < half) {
            sh_part[li] = sh_part[li] + sh_part[li + half];
        }
        workgroupBarrier();
    }
    if (live && li == 0u) {
        out[c] = sh_part[0];
    }
}
