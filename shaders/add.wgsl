// Element-wise accumulation, `y += x` (gradients meeting at a residual fork, a second path's
// input gradient). One invocation per element on a 2-d grid of workgroups (linear index
// wg.y * groups.x + wg.x). CPU twin: `CpuBackend::add_assign`.

#import len_params

const WG_SIZE: u32 = 256u;

@group(0) @binding(0) var<uniform> params: LenParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

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
    y[idx] = y[idx] + x[idx];
}
