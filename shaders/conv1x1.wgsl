// 1x1 convolution as a tiled GEMM, per image:  Y[co, p] = sum_ci W[co, ci] * X[ci, src(p)],
// where src(i, j) = (i*s, j*s) for stride s, followed by an optional epilogue applied in this
// order: per-channel affine (y = scale[co] * y + bias[co]), residual add (y += R[n, co, p]),
// ReLU.
//
// A workgroup of 16x16 invocations computes a 64 (output channels) x 64 (output pixels) tile;
// each invocation owns 4x4 outputs spaced 16 apart so that neighbouring invocations touch
// neighbouring pixels. The K dimension (input channels) is walked in steps of 16 through
// workgroup memory (2 x 4 KiB).

// With SHIFTED (asl_conv1x1_tiled.wgsl) it is the Active Shift Layer fused into the following
// 1x1 convolution, for GPUs: the input tile is loaded through the ASL's bilinear shift, so the
// shifted tensor never exists in memory (gemm.wgsl with SHIFTED is the register-tiled twin for
// CPU adapters):
//
//   Y[n, co, i, j] = epilogue(sum_ci W[co, ci] * ASL(x)[n, ci, i, j])
//   ASL(x)[n, c, i, j] = bilinear sample of x[n, c] at row i*s + ypos[c], column j*s + xpos[c],
//                        each of the four taps reading 0 outside the image (asl_forward.wgsl).
//
// Each element of the input tile is then the bilinear mix of its four taps, read once per tile
// (once per 64 output channels), with the channel's integer offsets and fractions precomputed
// by asl_taps.wgsl (a NaN shift gets offsets outside every image: the channel contributes 0).

#import conv1x1_params
#import gemm_store_scalar

const WG_SIZE: u32 = 256u;
const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

#bindings
0 params: uniform Conv1x1Params
// [N, Cin, H, W]
1 x: read f32
// [Cout, Cin]
2 weight: read f32
// [Cout] each; bound to a placeholder when the affine flag is off.
3 scale: read f32
4 bias: read f32
// [N, Cout, Ho, Wo]; bound to a placeholder when the residual flag is off.
5 residual: read f32
// [N, Cout, Ho, Wo]
6 y: read_write f32
#endbindings
#ifdef SHIFTED
#bindings
// Per input channel: (floor(xpos), floor(ypos), xpos - floor(xpos), ypos - floor(ypos)).
7 taps: read vec4<f32>
#endbindings

#import tap
#else
#import conv1x1_input
#endif

// sh_w[k * TILE_M + m] = W[tile_m + m, k0 + k];  sh_x[k * TILE_N + p] = X[k0 + k, src(tile_n + p)]
var<workgroup> sh_w: array<f32, 1024>;
var<workgroup> sh_x: array<f32, 1024>;

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
    let x_base = n * params.cin * plane_in;

    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < params.cin; k0 += TILE_K) {
        for (var l = 0u; l < 4u; l++) {
            let e = li + l * WG_SIZE;
            // Weights: consecutive invocations read consecutive input channels of a row.
            let wm = e / TILE_K;
            let wk = e % TILE_K;
            let co = tile_m + wm;
            let ci = k0 + wk;
            var wv = 0.0;
            if (co < params.cout && ci < params.cin) {
                wv = weight[co * params.cin + ci];
            }
            sh_w[wk * TILE_M + wm] = wv;
            // Activations: consecutive invocations read consecutive pixels of a channel.
            let xk = e / TILE_N;
            let xp = e % TILE_N;
            let p = tile_n + xp;
            let cx = k0 + xk;
            var xv = 0.0;
            if (p < plane_out && cx < params.cin) {
#ifdef SHIFTED
                let t = taps[cx];
                let r = i32((p / params.wo) * params.stride) + i32(t.y);
                let c = i32((p % params.wo) * params.stride) + i32(t.x);
                let base = x_base + cx * plane_in;
                let top = (1.0 - t.z) * tap(base, r, c) + t.z * tap(base, r, c + 1);
                let bottom = (1.0 - t.z) * tap(base, r + 1, c) + t.z * tap(base, r + 1, c + 1);
                xv = (1.0 - t.w) * top + t.w * bottom;
#else
                let src = (p / params.wo) * params.stride * params.w + (p % params.wo) * params.stride;
                xv = input(x[x_base + cx * plane_in + src], cx);
#endif
            }
            sh_x[xk * TILE_N + xp] = xv;
        }
        workgroupBarrier();
        for (var k = 0u; k < TILE_K; k++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var r = 0u; r < 4u; r++) {
                a[r] = sh_w[k * TILE_M + lid.y + 16u * r];
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

    let y_base = n * params.cout * plane_out;
    for (var r = 0u; r < 4u; r++) {
        let co = tile_m + lid.y + 16u * r;
        if (co >= params.cout) {
            continue;
        }
        for (var c = 0u; c < 4u; c++) {
            let p = tile_n + lid.x + 16u * c;
            if (p >= plane_out) {
                continue;
            }
            store_output(y_base + co * plane_out + p, co, acc[r][c]);
        }
    }
}
