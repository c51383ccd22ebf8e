// BatchNorm with batch statistics, followed by ReLU unless `params.relu` is 0 (the training-time
// form of the per-channel affine of docs/design.md §2), and its backward pass. CPU twin:
// `train::ops::bn_train` and `train::ops::bn_backward`.
//
// Forward, with M = N * H * W values per channel:
//   mean[c] = sum x / M,   var[c] = sum (x - mean)^2 / M   (biased),   inv_std = 1 / sqrt(var + eps)
//   y = max(0, scale * x + shift),   scale = gamma * inv_std,   shift = beta - mean * scale
// (without the ReLU: y = scale * x + shift).
//
// Backward, with dz = dy where y > 0 (else 0; without the ReLU dz = dy) and
// xhat = (x - mean) * inv_std:
//   dbeta[c] = sum dz,   dgamma[c] = sum dz * xhat
//   dx = gamma * inv_std * (dz - dbeta / M - xhat * dgamma / M)
//
// With frozen statistics (fine-tuning a model, `train::NormMode::Frozen`) `stats` holds given
// constants: `forward` runs without `batch_stats`, `backward_reduce` is the same, and
// `backward_input_frozen` drops the terms through the batch's mean and variance:
//   dx = gamma * inv_std * dz
//
// `stats` and `backward_reduce` run one workgroup per channel: every invocation sums a fixed,
// strided subset of the channel and the workgroup adds the partial sums in a fixed tree, so the
// result is the same on every run. The variance is a second pass over (x - mean)^2, which does
// not cancel the way E[x^2] - mean^2 does in f32. `forward` and `backward_input` run a few
// consecutive pixels of one plane per invocation.

// Its Rust twin `BnParams` is generated from this by build.rs (from naga\'s layout).
struct BnParams {
    n: u32,
    c: u32,
    // H * W.
    plane: u32,
    // N * C * H * W.
    len: u32,
    // 1: ReLU after the affine; 0: none.
    relu: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG_SIZE: u32 = 256u;
// Same as `train::ops::BN_EPS`.
const EPS: f32 = 1e-5;

#bindings
0 params: uniform BnParams
// [N, C, H, W]: the BatchNorm input.
1 x: read f32
// [C] each.
2 gamma: read f32
3 beta: read f32
// [3, C]: mean, biased variance, inv_std (written by `stats`, read by the others).
4 stats: read_write f32
// [N, C, H, W]: the output (written by `forward`, read by the backward pass).
5 y: read_write f32
// [N, C, H, W]: gradient of the output.
6 dy: read f32
// [2, C]: dgamma, then dbeta (written by `backward_reduce`).
7 dparams: read_write f32
// [N, C, H, W]: gradient of the input.
8 dx: read_write f32
#endbindings

var<workgroup> part_a: array<f32, WG_SIZE>;
var<workgroup> part_b: array<f32, WG_SIZE>;

// Where the k-th value (k < M) of a channel lies: image n, pixel p. The reductions walk k from
// the invocation's index in steps of WG_SIZE, moving (n, p) along without a division.
struct Walk {
    n: u32,
    p: u32,
}

fn walk_begin(li: u32) -> Walk {
    return Walk(li / params.plane, li % params.plane);
}

fn walk_next(w: Walk) -> Walk {
    var n = w.n + WG_SIZE / params.plane;
    var p = w.p + WG_SIZE % params.plane;
    if (p >= params.plane) {
        p -= params.plane;
        n += 1u;
    }
    return Walk(n, p);
}

// Whether the gradient `dy` at element i passes the ReLU (always, without one).
fn passes(i: u32) -> bool {
    return params.relu == 0u || y[i] > 0.0;
}

fn at(c: u32, w: Walk) -> u32 {
    return (w.n * params.c + c) * params.plane + w.p;
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
    var w = walk_begin(li);
    for (var k = li; k < m; k = k + WG_SIZE) {
        s = s + x[at(c, w)];
        w = walk_next(w);
    }
    part_a[li] = s;
    part_b[li] = 0.0;
    workgroupBarrier();
    tree_sum(li);
    let mean = part_a[0] / f32(m);
    workgroupBarrier();
    var s2 = 0.0;
    w = walk_begin(li);
    for (var k = li; k < m; k = k + WG_SIZE) {
        let d = x[at(c, w)] - mean;
        s2 = s2 + d * d;
        w = walk_next(w);
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

// The elements of `forward` and `backward_input` (workgroup (x, y, z): pixel block x of channel
// y of image z, EW_PER pixels per invocation), so that the channel's numbers are the same for
// the whole workgroup and no index needs a division.
const EW_WG: u32 = 64u;
const EW_PER: u32 = 4u;

@compute @workgroup_size(EW_WG)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.y;
    let p0 = (wg.x * EW_WG + li) * EW_PER;
    let base = (wg.z * params.c + c) * params.plane;
    let scale = gamma[c] * stats[2u * params.c + c];
    let shift = beta[c] - stats[c] * scale;
    for (var e = 0u; e < EW_PER; e++) {
        let p = p0 + e;
        if (p < params.plane) {
            let v = scale * x[base + p] + shift;
            y[base + p] = select(v, max(v, 0.0), params.relu != 0u);
        }
    }
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
    var w = walk_begin(li);
    for (var k = li; k < m; k = k + WG_SIZE) {
        let i = at(c, w);
        if (passes(i)) {
            let g = dy[i];
            sd = sd + g;
            sdx = sdx + g * (x[i] - mean) * inv_std;
        }
        w = walk_next(w);
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

@compute @workgroup_size(EW_WG)
fn backward_input(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.y;
    let p0 = (wg.x * EW_WG + li) * EW_PER;
    let base = (wg.z * params.c + c) * params.plane;
    let m = f32(params.n * params.plane);
    let mean = stats[c];
    let inv_std = stats[2u * params.c + c];
    let k = gamma[c] * inv_std;
    let mean_dz = dparams[params.c + c] / m;
    let mean_dzx = dparams[c] / m;
    for (var e = 0u; e < EW_PER; e++) {
        let p = p0 + e;
        if (p < params.plane) {
            let i = base + p;
            let dz = select(0.0, dy[i], passes(i));
            let xhat = (x[i] - mean) * inv_std;
            dx[i] = k * (dz - mean_dz - xhat * mean_dzx);
        }
    }
}

@compute @workgroup_size(EW_WG)
fn backward_input_frozen(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.y;
    let p0 = (wg.x * EW_WG + li) * EW_PER;
    let base = (wg.z * params.c + c) * params.plane;
    let k = gamma[c] * stats[2u * params.c + c];
    for (var e = 0u; e < min(EW_PER, params.plane - min(p0, params.plane)); e++) {
        let i = base + p0 + e;
        dx[i] = select(0.0, k * dy[i], passes(i));
    }
}
