// BatchNorm with batch statistics followed by ReLU (the training-time form of the per-channel
// affine of docs/design.md §2), and its backward pass. CPU twin: `train::ops::bn_relu_train` and
// `train::ops::bn_relu_backward`.
//
// Forward, with M = N * H * W values per channel:
//   mean[c] = sum x / M,   var[c] = sum (x - mean)^2 / M   (biased),   inv_std = 1 / sqrt(var + eps)
//   y = max(0, scale * x + shift),   scale = gamma * inv_std,   shift = beta - mean * scale
//
// Backward, with dz = dy where y > 0 (else 0) and xhat = (x - mean) * inv_std:
//   dbeta[c] = sum dz,   dgamma[c] = sum dz * xhat
//   dx = gamma * inv_std * (dz - dbeta / M - xhat * dgamma / M)
//
// `stats` and `backward_reduce` run one workgroup per channel: every invocation sums a fixed,
// strided subset of the channel and the workgroup adds the partial sums in a fixed tree, so the
// result is the same on every run. The variance is a second pass over (x - mean)^2, which does
// not cancel the way E[x^2] - mean^2 does in f32. `forward` and `backward_input` run one
// invocation per element on a 2-d grid of workgroups (linear index wg.y * groups.x + wg.x).

// Mirrors `BnParams` in src/gpu/kernels/training.rs.
struct BnParams {
    n: u32,
    c: u32,
    // H * W.
    plane: u32,
    // N * C * H * W.
    len: u32,
}

const WG_SIZE: u32 = 256u;
// Same as `train::ops::BN_EPS`.
const EPS: f32 = 1e-5;

@group(0) @binding(0) var<uniform> params: BnParams;
// [N, C, H, W]: the BatchNorm input.
@group(0) @binding(1) var<storage, read> x: array<f32>;
// [C] each.
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
// [3, C]: mean, biased variance, inv_std (written by `stats`, read by the others).
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
// [N, C, H, W]: the output (written by `forward`, read by the backward pass).
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
// [N, C, H, W]: gradient of the output.
@group(0) @binding(6) var<storage, read> dy: array<f32>;
// [2, C]: dgamma, then dbeta (written by `backward_reduce`).
@group(0) @binding(7) var<storage, read_write> dparams: array<f32>;
// [N, C, H, W]: gradient of the input.
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;

var<workgroup> part_a: array<f32, WG_SIZE>;
var<workgroup> part_b: array<f32, WG_SIZE>;

// Index of the k-th value (k < M) of channel c.
fn at(c: u32, k: u32) -> u32 {
    let n = k / params.plane;
    return (n * params.c + c) * params.plane + k % params.plane;
}

// Add part_a and part_b over the workgroup in a fixed tree; the sums end in slot 0.
fn tree_sum(li: u32) {
    for (var s = WG_SIZE / 2u; s > 0u; s = s / 2u) {
        if (li < s) {
            part_a[li] = part_a[li] + part_a[li + s];
            part_b[li] = part_b[li] + part_b[li + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG_SIZE)
fn batch_stats(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.x;
    let m = params.n * params.plane;
    var s = 0.0;
    for (var k = li; k < m; k = k + WG_SIZE) {
        s = s + x[at(c, k)];
    }
    part_a[li] = s;
    part_b[li] = 0.0;
    workgroupBarrier();
    tree_sum(li);
    let mean = part_a[0] / f32(m);
    workgroupBarrier();
    var s2 = 0.0;
    for (var k = li; k < m; k = k + WG_SIZE) {
        let d = x[at(c, k)] - mean;
        s2 = s2 + d * d;
    }
    part_a[li] = s2;
    workgroupBarrier();
    tree_sum(li);
    if (li == 0u) {
        let variance = part_a[0] / f32(m);
        stats[c] = mean;
        stats[params.c + c] = variance;
        stats[2u * params.c + c] = 1.0 / sqrt(variance + EPS);
    }
}

#import element

@compute @workgroup_size(WG_SIZE)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = element(wg, groups, li);
    if (idx >= params.len) {
        return;
    }
    let c = (idx / params.plane) % params.c;
    let scale = gamma[c] * stats[2u * params.c + c];
    let shift = beta[c] - stats[c] * scale;
    y[idx] = max(scale * x[idx] + shift, 0.0);
}

@compute @workgroup_size(WG_SIZE)
fn backward_reduce(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.x;
    let m = params.n * params.plane;
    let mean = stats[c];
    let inv_std = stats[2u * params.c + c];
    var sd = 0.0;
    var sdx = 0.0;
    for (var k = li; k < m; k = k + WG_SIZE) {
        let i = at(c, k);
        if (y[i] > 0.0) {
            let g = dy[i];
            sd = sd + g;
            sdx = sdx + g * (x[i] - mean) * inv_std;
        }
    }
    part_a[li] = sdx;
    part_b[li] = sd;
    workgroupBarrier();
    tree_sum(li);
    if (li == 0u) {
        dparams[c] = part_a[0];
        dparams[params.c + c] = part_b[0];
    }
}

@compute @workgroup_size(WG_SIZE)
fn backward_input(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = element(wg, groups, li);
    if (idx >= params.len) {
        return;
    }
    let c = (idx / params.plane) % params.c;
    let m = f32(params.n * params.plane);
    let inv_std = stats[2u * params.c + c];
    var dz = 0.0;
    if (y[idx] > 0.0) {
        dz = dy[idx];
    }
    let xhat = (x[idx] - stats[c]) * inv_std;
    dx[idx] = gamma[c] * inv_std * (dz - dparams[params.c + c] / m - xhat * dparams[c] / m);
}
