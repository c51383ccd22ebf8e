// Gradient of the 1x1 convolution with respect to its input, as a tiled GEMM per image:
//
//   dX[ci, q] = sum_co W[co, ci] * dY[co, q / s]   when q = (i*s, j*s) lies on the stride grid,
//   dX[ci, q] = 0                                  for the input pixels the stride skipped.
//
// Same tiling as conv1x1.wgsl: 64 (input channels) x 64 (input pixels) per workgroup, 4x4 per
// invocation, K (output channels) in steps of 16.

#import conv1x1_params

const WG_SIZE: u32 = 256u;
const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

@group(0) @binding(0) var<uniform> params: Conv1x1Params;
// [N, Cout, Ho, Wo]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
// [Cout, Cin]
@group(0) @binding(2) var<storage, read> weight: array<f32>;
// [N, Cin, H, W]
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// sh_w[k * TILE_M + m] = W[k0 + k, tile_m + m];  sh_g[k * TILE_N + q] = dY[k0 + k, grid(tile_n + q)]
var<workgroup> sh_w: array<f32, 1024>;
var<workgroup> sh_g: array<f32, 1024>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let tile_n = wg.x * TILE_N;
    let tile_m = wg.y * TILE_M;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    let g_base = n * params.cout * plane_out;

    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < params.cout; k0 += TILE_K) {
        for (var l = 0u; l < 4u; l++) {
            let e = li + l * WG_SIZE;
            let k = e / TILE_M;
            let m = e % TILE_M;
            let co = k0 + k;
            let ci = tile_m + m;
            var wv = 0.0;
            if (co < params.cout && ci < params.cin) {
                wv = weight[co * params.cin + ci];
            }
            sh_w[k * TILE_M + m] = wv;

            let q = tile_n + m;
            var gv = 0.0;
            if (q < plane_in && co < params.cout) {
                let row = q / params.w;
                let col = q % params.w;
                if (row % params.stride == 0u && col % params.stride == 0u) {
                    let src = (row / params.stride) * params.wo + col / params.stride;
                    gv = dy[g_base + co * plane_out + src];
                }
            }
            sh_g[k * TILE_N + m] = gv;
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE_K; k++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var r = 0u; r < 4u; r++) {
                a[r] = sh_w[k * TILE_M + lid.y + 16u * r];
                b[r] = sh_g[k * TILE_N + lid.x + 16u * r];
            }
            for (var r = 0u; r < 4u; r++) {
                for (var c = 0u; c < 4u; c++) {
                    acc[r][c] += a[r] * b[c];
                }
            }
        }
        workgroupBarrier();
    }

    let x_base = n * params.cin * plane_in;
    for (var r = 0u; r < 4u; r++) {
        let ci = tile_m + lid.y + 16u * r;
        if (ci >= params.cin) {
            continue;
        }
        for (var c = 0u; c < 4u; c++) {
            let q = tile_n + lid.x + 16u * c;
            if (q < plane_in) {
                dx[x_base + ci * plane_in + q] = acc[r][c];
            }
        }
    }
}
