// Backward of depthwise3x3.wgsl (3x3 depthwise convolution, padding 1, stride s, no bias):
//
//   forward:  y[n, c, i, j] = sum over ky, kx of w[c, ky, kx] * x[n, c, i*s + ky - 1, j*s + kx - 1]
//
// Entry point `input`: the input gradient as a gather (no atomics, deterministic), one
// invocation per element of dx:
//
//   dx[n, c, r, q] = sum over the (ky, kx) with r = i*s + ky - 1, q = j*s + kx - 1 for some
//                    output pixel (i, j) of w[c, ky, kx] * dy[n, c, i, j]
//
// Entry point `weight_grad`: the weight gradient, one workgroup per channel; each invocation sums
// a fixed strided subset of the N*Ho*Wo output positions for all 9 taps, then the workgroup
// adds the partial sums in a fixed tree order (bitwise reproducible run to run):
//
//   dw[c, ky, kx] = sum over n, i, j of x[n, c, i*s + ky - 1, j*s + kx - 1] * dy[n, c, i, j]
//
// with x read as 0 outside the image.

// Its Rust twin `DepthwiseBackwardParams` is generated from this by build.rs (from naga\'s layout).
struct DepthwiseBackwardParams {
#include plane_shape
    _pad: u32,
}

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform DepthwiseBackwardParams
// [N, C, H, W] (the forward input; read by `weight` only)
1 x: read f32
// [N, C, Ho, Wo]
2 dy: read f32
// [C, 1, 3, 3] (read by `input` only)
3 weight: read f32
// [N, C, H, W] (written by `input`)
4 dx: read_write f32
// [C, 1, 3, 3] (written by `weight`)
5 dw: read_write f32
#endbindings

var<workgroup> partial: array<array<f32, 9>, WG_SIZE>;

// The output index i with i*s + k - 1 = r (k the filter tap), or -1 when there is none.
fn source(r: u32, k: u32, limit: u32) -> i32 {
    let t = i32(r) + 1 - i32(k);
    if (t < 0 || t % i32(params.stride) != 0) {
        return -1;
    }
    let i = t / i32(params.stride);
    return select(-1, i, i < i32(limit));
}

@compute @workgroup_size(WG_SIZE)
fn input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let plane = params.h * params.w;
    let idx = gid.y * groups.x * WG_SIZE + gid.x;
    if (idx >= params.n * params.c * plane) {
        return;
    }
    let nc = idx / plane;
    let c = nc % params.c;
    let r = (idx % plane) / params.w;
    let q = idx % params.w;
    let out_base = nc * params.ho * params.wo;
    var v = 0.0;
    for (var ky = 0u; ky < 3u; ky++) {
        let i = source(r, ky, params.ho);
        if (i < 0) {
            continue;
        }
        for (var kx = 0u; kx < 3u; kx++) {
            let j = source(q, kx, params.wo);
            if (j < 0) {
                continue;
            }
            v += weight[c * 9u + ky * 3u + kx] * dy[out_base + u32(i) * params.wo + u32(j)];
        }
    }
    dx[idx] = v;
}

@compute @workgroup_size(WG_SIZE)
fn weight_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let c = wg.x;
    let per_image = params.ho * params.wo;
    let total = params.n * per_image;
    var acc: array<f32, 9>;
    for (var t = 0u; t < 9u; t++) {
        acc[t] = 0.0;
    }
    for (var p = li; p < total; p += WG_SIZE) {
        let n = p / per_image;
        let i = (p % per_image) / params.wo;
        let j = p % params.wo;
        let g = dy[(n * params.c + c) * per_image + i * params.wo + j];
        let base = (n * params.c + c) * params.h * params.w;
        for (var ky = 0u; ky < 3u; ky++) {
            let r = i32(i * params.stride + ky) - 1;
            if (r < 0 || r >= i32(params.h)) {
                continue;
            }
            for (var kx = 0u; kx < 3u; kx++) {
                let q = i32(j * params.stride + kx) - 1;
                if (q < 0 || q >= i32(params.w)) {
                    continue;
                }
                acc[ky * 3u + kx] += x[base + u32(r) * params.w + u32(q)] * g;
            }
        }
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var half = WG_SIZE / 2u; half > 0u; half /= 2u) {
        if (li < half) {
            for (var t = 0u; t < 9u; t++) {
                partial[li][t] += partial[li + half][t];
            }
        }
        workgroupBarrier();
    }
    if (li < 9u) {
        dw[c * 9u + li] = partial[0][li];
    }
}
