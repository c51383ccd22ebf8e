// Gradient of the 1x1 convolution with respect to its weights, as a tiled GEMM over the whole
// batch:
//
//   dW[co, ci] = sum over images n and output pixels p of dY[n, co, p] * X[n, ci, src(p)]
//
// with src(i, j) = (i*s, j*s). K = N * Ho * Wo is split into `splits` chunks of `k_chunk` terms
// (a multiple of 16): workgroup (x, y, z) owns a 64 x 64 tile of dW and chunk z, walks it in
// steps of 16 and writes its partial sums to part[z]; `reduce_splits` then adds the chunks in
// order, one invocation per weight. The same result on every run.

#import conv1x1_params

const WG_SIZE: u32 = 256u;
const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

@group(0) @binding(0) var<uniform> params: Conv1x1Params;
// [N, Cout, Ho, Wo]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
// [N, Cin, H, W]
@group(0) @binding(2) var<storage, read> x: array<f32>;
// [Cout, Cin]
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
// [splits, Cout, Cin]: each chunk's partial sums.
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

// sh_g[k * TILE_M + m] = dY[kk, tile_m + m];  sh_x[k * TILE_N + c] = X[kk, tile_n + c], kk = k0 + k
var<workgroup> sh_g: array<f32, 1024>;
var<workgroup> sh_x: array<f32, 1024>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tile_n = wg.x * TILE_N;
    let tile_m = wg.y * TILE_M;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    let total = params.n * plane_out;

    let k_begin = wg.z * params.k_chunk;
    let k_end = min(total, k_begin + params.k_chunk);
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (var l = 0u; l < 4u; l++) {
            // Consecutive invocations walk consecutive pixels (k) of one channel (m).
            let e = li + l * WG_SIZE;
            let m = e / TILE_K;
            let k = e % TILE_K;
            let kk = k0 + k;
            var gv = 0.0;
            var xv = 0.0;
            if (kk < k_end) {
                let n = kk / plane_out;
                let p = kk % plane_out;
                let co = tile_m + m;
                if (co < params.cout) {
                    gv = dy[(n * params.cout + co) * plane_out + p];
                }
                let ci = tile_n + m;
                if (ci < params.cin) {
                    let src = (p / params.wo) * params.stride * params.w + (p % params.wo) * params.stride;
                    xv = x[(n * params.cin + ci) * plane_in + src];
                }
            }
            sh_g[k * TILE_M + m] = gv;
            sh_x[k * TILE_N + m] = xv;
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE_K; k++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var r = 0u; r < 4u; r++) {
                a[r] = sh_g[k * TILE_M + lid.y + 16u * r];
                b[r] = sh_x[k * TILE_N + lid.x + 16u * r];
            }
            for (var r = 0u; r < 4u; r++) {
                for (var c = 0u; c < 4u; c++) {
                    acc[r][c] += a[r] * b[c];
                }
            }
        }
        workgroupBarrier();
    }

    for (var r = 0u; r < 4u; r++) {
        let co = tile_m + lid.y + 16u * r;
        if (co >= params.cout) {
            continue;
        }
        for (var c = 0u; c < 4u; c++) {
            let ci = tile_n + lid.x + 16u * c;
            if (ci < params.cin) {
                part[(wg.z * params.cout + co) * params.cin + ci] = acc[r][c];
            }
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn reduce_splits(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = (wg.y * groups.x + wg.x) * 256u + li;
    let len = params.cout * params.cin;
    if (i >= len) {
        return;
    }
    var s = 0.0;
    for (var z = 0u; z < params.splits; z++) {
        s += part[z * len + i];
    }
    dw[i] = s;
}
