// Gradient of global average pooling: every pixel of a channel plane receives the plane's
// output gradient divided by the plane size.
//
//   dx[n, c, i, j] = dy[n, c] / (H * W)
//
// One invocation per element of dx on a 2-d grid of workgroups (linear index
// wg.y * groups.x + wg.x). CPU twin: `CpuBackend::avg_pool_backward`.

#import len_params

const WG_SIZE: u32 = 256u;

@group(0) @binding(0) var<uniform> params: LenParams;
// [N, C]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
// [N, C, H, W]
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = (wg.y * groups.x + wg.x) * WG_SIZE + li;
    if (idx >= params.len) {
        return;
    }
    dx[idx] = dy[idx / params.plane] / f32(params.plane);
}
