// Gradient of global average pooling: every pixel of a channel plane receives the plane's
// output gradient divided by the plane size.
//
//   dx[n, c, i, j] = dy[n, c] / (H * W)
//
// One invocation per element of dx on a 2-d grid of workgroups (linear index
// wg.y * groups.x + wg.x). CPU twin: `CpuBackend::avg_pool_backward`.

#import len_params

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform LenParams
// [N, C]
1 dy: read f32
// [N, C, H, W]
2 dx: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE)
fn main(
#include element_args
) {
    let idx = (wg.y * groups.x + wg.x) * WG_SIZE + li;
    if (idx >= params.len) {
        return;
    }
    dx[idx] = dy[idx / params.plane] / f32(params.plane);
}
