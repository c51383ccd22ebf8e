// Global average pooling (docs/design.md §2-3, before the classifier):
//
//   y[n, c, 0, 0] = (sum over i, j of x[n, c, i, j]) / (H * W)
//
// One workgroup per (n, c) plane: workgroup_id.x is the channel, workgroup_id.y the image.
// Invocation k sums elements k, k + WG_SIZE, k + 2*WG_SIZE, ... of the plane, then a tree in
// workgroup memory adds the WG_SIZE partial sums, so the order of every addition is fixed and
// the result is bitwise identical from run to run. The workgroup is small because the planes
// are small (7x7 at the end of the network) and on CPU implementations (lavapipe) every barrier
// costs in proportion to the workgroup size: on [8, 256, 7, 7], 64 invocations took about twice
// as long as 32, and 256 ten times as long.

// Its Rust twin `PoolParams` is generated from this by build.rs (from naga\'s layout).
struct PoolParams {
    n: u32,
    c: u32,
    // H * W.
    plane: u32,
    _pad0: u32,
}

const WG_SIZE: u32 = 32u;

#bindings
0 params: uniform PoolParams
// [N, C, H, W]
1 x: read f32
// [N, C, 1, 1]
2 y: read_write f32
#endbindings

var<workgroup> sh_sum: array<f32, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let plane_index = wg.y * params.c + wg.x;
    let base = plane_index * params.plane;
    var s = 0.0;
    for (var k = li; k < params.plane; k += WG_SIZE) {
        s += x[base + k];
    }
    sh_sum[li] = s;
    for (var width = WG_SIZE / 2u; width > 0u; width = width / 2u) {
        workgroupBarrier();
        if (li < width) {
            sh_sum[li] += sh_sum[li + width];
        }
    }
    workgroupBarrier();
    if (li == 0u) {
        y[plane_index] = sh_sum[0] / f32(params.plane);
    }
}
