// Gradient of the 1x1 convolution with respect to its input, per image:
//
//   dX[ci, q] = sum_co W[co, ci] * dY[co, q / s]   when q = (i*s, j*s) lies on the stride grid,
//   dX[ci, q] = 0                                  for the input pixels the stride skipped.
//
// A register-tiled GEMM without workgroup memory or barriers: each invocation owns 4
// consecutive input pixels and ROWS input channels of one image (workgroup (x, y, z): pixel
// groups, channel block y, image z, so every invocation of a workgroup reads the same weights)
// and walks the output channels, reading each weight once and the 4 pixels' gradients once.

#import conv1x1_params

const WG_SIZE: u32 = 64u;
const ROWS: u32 = 8u;

@group(0) @binding(0) var<uniform> params: Conv1x1Params;
// [N, Cout, Ho, Wo]
@group(0) @binding(1) var<storage, read> dy: array<f32>;
// [Cout, Cin]
@group(0) @binding(2) var<storage, read> weight: array<f32>;
// [N, Cin, H, W]
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG_SIZE, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    let q0 = (wg.x * WG_SIZE + li) * 4u;
    if (q0 >= plane_in) {
        return;
    }
    let ci0 = wg.y * ROWS;
    // Where each of the 4 pixels reads dY, and whether it lies on the stride grid (pixels off
    // the grid or past the plane read pixel 0 and keep 0).
    var src: array<u32, 4>;
    var on: array<bool, 4>;
    for (var e = 0u; e < 4u; e++) {
        let q = q0 + e;
        let row = q / params.w;
        let col = q % params.w;
        on[e] = q < plane_in && row % params.stride == 0u && col % params.stride == 0u;
        src[e] = select(0u, (row / params.stride) * params.wo + col / params.stride, on[e]);
    }
    let g_base = n * params.cout * plane_out;
    // Channels past the edge read the last one and are not stored.
    var wc: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        wc[r] = min(ci0 + r, params.cin - 1u);
    }
    var acc: array<vec4<f32>, ROWS>;
    for (var co = 0u; co < params.cout; co++) {
        let b = g_base + co * plane_out;
        let g = vec4<f32>(
            select(0.0, dy[b + src[0]], on[0]),
            select(0.0, dy[b + src[1]], on[1]),
            select(0.0, dy[b + src[2]], on[2]),
            select(0.0, dy[b + src[3]], on[3]),
        );
        let wb = co * params.cin;
        for (var r = 0u; r < ROWS; r++) {
            acc[r] += weight[wb + wc[r]] * g;
        }
    }
    let x_base = n * params.cin * plane_in;
    for (var r = 0u; r < ROWS; r++) {
        let ci = ci0 + r;
        if (ci >= params.cin) {
            break;
        }
        for (var e = 0u; e < 4u; e++) {
            if (q0 + e < plane_in) {
                dx[x_base + ci * plane_in + q0 + e] = acc[r][e];
            }
        }
    }
}
