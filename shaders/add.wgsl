// Element-wise accumulation and the ReLU steps of the training pass, in place on `y`. One
// invocation per element on a 2-d grid of workgroups (linear index wg.y * groups.x + wg.x).
// CPU twins: `CpuBackend::add_assign`, `add_relu_assign`, `relu_backward_assign`.
//
// - `main`: `y += x` (gradients meeting at a residual fork, a second path's input gradient).
// - `add_relu` (RELU): `y = max(y + x, 0)` (a residual added after a BatchNorm epilogue, then
//   the ReLU).
// - `relu_backward` (RELU_BACKWARD): `y = y where x > 0, else 0` (`y` the gradient of a ReLU's
//   output, `x` that output).

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
#ifdef RELU
    y[idx] = max(y[idx] + x[idx], 0.0);
#else
#ifdef RELU_BACKWARD
    y[idx] = select(0.0, y[idx], x[idx] > 0.0);
#else
    y[idx] = y[idx] + x[idx];
#endif
#endif
}
