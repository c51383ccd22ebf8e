// Gradient of the 1x1 convolution with respect to its weights, over the whole batch:
//
//   dW[co, ci] = sum over images n and output pixels p of dY[n, co, p] * X[n, ci, src(p)]
//
// with src(i, j) = (i*s, j*s). The batch's output rows are cut into `splits` chunks (image n,
// `k_chunk` rows from row r0): one invocation owns a block of 8 output x 8 input channels of
// one chunk, walks its pixels without a barrier or a division (the source pixel advances by
// the stride) and writes its 64 partial sums to part[chunk]; `reduce_splits` then adds the
// chunks in order, one invocation per weight. The same result on every run.

#import conv1x1_params

const WG_SIZE: u32 = 64u;
// Output (rows) and input (cols) channels per invocation.
const BLOCK: u32 = 8u;

#bindings
0 params: uniform Conv1x1Params
// [N, Cout, Ho, Wo]
1 dy: read f32
// [N, Cin, H, W]
2 x: read f32
// [Cout, Cin]
3 dw: read_write f32
// [splits, Cout, Cin]: each chunk's partial sums.
4 part: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE, 1, 1)
fn main(
#include element_args
) {
    let g = (wg.y * groups.x + wg.x) * WG_SIZE + li;
    let ncb = (params.cin + BLOCK - 1u) / BLOCK;
    let nob = (params.cout + BLOCK - 1u) / BLOCK;
    let cb = g % ncb;
    let ob = (g / ncb) % nob;
    let z = g / (ncb * nob);
    if (z >= params.splits) {
        return;
    }
    let per_image = (params.ho + params.k_chunk - 1u) / params.k_chunk;
    let n = z / per_image;
    let r0 = (z % per_image) * params.k_chunk;
    let r1 = min(params.ho, r0 + params.k_chunk);
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    let ci0 = cb * BLOCK;
    let co0 = ob * BLOCK;
    // Channels past the edge read the last one and are not stored.
    var xo: array<u32, BLOCK>;
    var go: array<u32, BLOCK>;
    for (var b = 0u; b < BLOCK; b++) {
        xo[b] = (n * params.cin + min(ci0 + b, params.cin - 1u)) * plane_in;
        go[b] = (n * params.cout + min(co0 + b, params.cout - 1u)) * plane_out;
    }
    // acc[2 * r + h] holds dW[co0 + r, ci0 + 4h .. ci0 + 4h + 3].
    var acc: array<vec4<f32>, 16>;
    for (var i = r0; i < r1; i++) {
        var po = i * params.wo;
        var pi = i * params.stride * params.w;
        for (var j = 0u; j < params.wo; j++) {
            let xa = vec4<f32>(x[xo[0] + pi], x[xo[1] + pi], x[xo[2] + pi], x[xo[3] + pi]);
            let xb = vec4<f32>(x[xo[4] + pi], x[xo[5] + pi], x[xo[6] + pi], x[xo[7] + pi]);
            for (var r = 0u; r < BLOCK; r++) {
                let gv = dy[go[r] + po];
                acc[2u * r] += gv * xa;
                acc[2u * r + 1u] += gv * xb;
            }
            po += 1u;
            pi += params.stride;
        }
    }
    let len = params.cout * params.cin;
    for (var r = 0u; r < BLOCK; r++) {
        let co = co0 + r;
        if (co >= params.cout) {
            break;
        }
        for (var c = 0u; c < BLOCK; c++) {
            let ci = ci0 + c;
            if (ci < params.cin) {
                part[z * len + co * params.cin + ci] = acc[2u * r + c / 4u][c % 4u];
            }
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn reduce_splits(
#include element_args
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
