// Per-channel affine (inference-time BatchNorm, docs/design.md §2) with an optional ReLU:
//
//   y[n, c, i, j] = scale[c] * x[n, c, i, j] + bias[c],   then max(y, 0) if params.relu != 0
//
// One invocation per element of the flattened NCHW tensor. The workgroups are laid out as a
// 2-d grid (x fastest) when there are more than the per-dimension limit; the linear workgroup
// index is wg.y * num_workgroups.x + wg.x. `main` reads x and writes y (two buffers);
// `in_place` reads and overwrites y (the same tensor cannot be bound twice in one dispatch):
// the entry points of build.rs's KERNELS, one `main` here with the array read (SRC) a define.
// `main4` and `in_place4` do the same for planes (H * W) divisible by 4, one vec4 of a
// channel plane per invocation on a [plane chunks, C, N] grid, so the channel comes from the
// workgroup id instead of a per-element division: on CPU adapters such as lavapipe, where an
// integer division or a varying load costs a loop over the SIMD lanes, about 3x faster.

// Its Rust twin `AffineParams` is generated from this by build.rs (from naga\'s layout).
struct AffineParams {
    // Number of elements, N * C * H * W.
    len: u32,
    c: u32,
    // H * W.
    plane: u32,
    // 1: clamp negative results to zero.
    relu: u32,
}

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform AffineParams
// [N, C, H, W]; not used by `in_place`.
1 x: read f32
// [C] each.
2 scale: read f32
3 bias: read f32
// [N, C, H, W]
4 y: read_write f32
// The same tensors as vec4s along the plane, for `main4` (x4 and y4) and `in_place4` (y4).
5 x4: read vec4<f32>
6 y4: read_write vec4<f32>
#endbindings

#import element

fn apply4(c: u32, v: vec4<f32>) -> vec4<f32> {
    var r = scale[c] * v + bias[c];
    if (params.relu != 0u) {
        r = max(r, vec4<f32>(0.0));
    }
    return r;
}

fn apply(idx: u32, v: f32) -> f32 {
    let c = (idx / params.plane) % params.c;
    var r = scale[c] * v + bias[c];
    if (params.relu != 0u) {
        r = max(r, 0.0);
    }
    return r;
}

@compute @workgroup_size(WG_SIZE)
#ifdef VEC4
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // Workgroup (x, c, n) covers vec4s x * WG_SIZE .. of plane (n, c).
    let plane4 = params.plane / 4u;
    let q = wg.x * WG_SIZE + li;
    if (q >= plane4) {
        return;
    }
    let idx4 = (wg.z * params.c + wg.y) * plane4 + q;
    y4[idx4] = apply4(wg.y, SRC[idx4]);
}
#else
fn main(
#include element_args
) {
    let idx = element(wg, groups, li);
    if (idx >= params.len) {
        return;
    }
    y[idx] = apply(idx, SRC[idx]);
}
#endif
