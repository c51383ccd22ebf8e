// Per-channel affine (inference-time BatchNorm, DESIGN.md §2) with an optional ReLU:
//
//   y[n, c, i, j] = scale[c] * x[n, c, i, j] + bias[c],   then max(y, 0) if params.relu != 0
//
// One invocation per element of the flattened NCHW tensor. The workgroups are laid out as a
// 2-d grid (x fastest) when there are more than the per-dimension limit; the linear workgroup
// index is wg.y * num_workgroups.x + wg.x. `main` reads x and writes y (two buffers);
// `in_place` reads and overwrites y (the same tensor cannot be bound twice in one dispatch).

// Mirrors `AffineParams` in src/gpu/kernels/elementwise.rs.
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

@group(0) @binding(0) var<uniform> params: AffineParams;
// [N, C, H, W]; not used by `in_place`.
@group(0) @binding(1) var<storage, read> x: array<f32>;
// [C] each.
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// [N, C, H, W]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn element(wg: vec3<u32>, groups: vec3<u32>, li: u32) -> u32 {
    return (wg.y * groups.x + wg.x) * WG_SIZE + li;
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
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = element(wg, groups, li);
    if (idx >= params.len) {
        return;
    }
    y[idx] = apply(idx, x[idx]);
}

@compute @workgroup_size(WG_SIZE)
fn in_place(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = element(wg, groups, li);
    if (idx >= params.len) {
        return;
    }
    y[idx] = apply(idx, y[idx]);
}
