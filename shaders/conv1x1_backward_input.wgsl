// Gradient of the 1x1 convolution with respect to its input, per image:
//
//   dX[ci, (i*s, j*s)] = sum_co W[co, ci] * dY[co, (i, j)]   on the stride grid,
//   dX[ci, q] = 0                                            for the input pixels the stride skipped.
//
// A register-tiled GEMM without workgroup memory or barriers: each invocation owns 4
// consecutive output-grid pixels and ROWS input channels of one image (workgroup (x, y, z):
// pixel groups, channel block y, image z, so every invocation of a workgroup reads the same
// weights), walks the output channels reading each weight once and the 4 pixels' gradients
// once, then writes the s x s block of input pixels each grid pixel starts: its sum at the
// corner, zeros on the rest (the blocks tile the image, so every value of dX is written once).
// At stride 1 on CPU adapters the forward pass's packed GEMM over the transposed weight runs
// instead (`KernelPolicy::conv1x1_backward_input`).

#import conv1x1_params

const WG_SIZE: u32 = 64u;
const ROWS: u32 = 8u;

#bindings
0 params: uniform Conv1x1Params
// [N, Cout, Ho, Wo]
1 dy: read f32
// [Cout, Cin]
2 weight: read f32
// [N, Cin, H, W]
3 dx: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    let p0 = (wg.x * WG_SIZE + li) * 4u;
    if (p0 >= plane_out) {
        return;
    }
    let ci0 = wg.y * ROWS;
    // Pixels past the plane read the last one and are not stored.
    var src: array<u32, 4>;
    for (var e = 0u; e < 4u; e++) {
        src[e] = min(p0 + e, plane_out - 1u);
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
        let g = vec4<f32>(dy[b + src[0]], dy[b + src[1]], dy[b + src[2]], dy[b + src[3]]);
        let wb = co * params.cin;
        for (var r = 0u; r < ROWS; r++) {
            acc[r] += weight[wb + wc[r]] * g;
        }
    }
    let s = params.stride;
    let x_base = n * params.cin * plane_in;
    for (var e = 0u; e < 4u; e++) {
        let p = p0 + e;
        if (p >= plane_out) {
            break;
        }
        let top = (p / params.wo) * s;
        let left = (p % params.wo) * s;
        let rows = min(s, params.h - top);
        let cols = min(s, params.w - left);
        for (var r = 0u; r < ROWS; r++) {
            let ci = ci0 + r;
            if (ci >= params.cin) {
                break;
            }
            let corner = x_base + ci * plane_in + top * params.w + left;
            for (var a = 0u; a < rows; a++) {
                for (var b = 0u; b < cols; b++) {
                    dx[corner + a * params.w + b] = select(0.0, acc[r][e], a == 0u && b == 0u);
                }
            }
        }
    }
}
