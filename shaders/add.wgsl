// Element-wise accumulation, `y += x` (gradients meeting at a residual fork, a second path's
// input gradient). One invocation per element on a 2-d grid of workgroups (linear index
// wg.y * groups.x + wg.x). CPU twin: `CpuBackend::add_assign`.

#import len_params

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform LenParams
1 x: read f32
2 y: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE)
fn main(
#include element_args
) {
    let idx = (wg.y * groups.x + wg.x) * WG_SIZE + li;
    if (idx >= params.len) {
        return;
    }
    y[idx] = y[idx] + x[idx];
}
