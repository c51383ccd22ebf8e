// 3x3 convolution, padding 1, stride s >= 1, no bias (docs/design.md §2, the network stem):
//
//   y[n, co, i, j] = sum over ci, ky, kx of w[co, ci, ky, kx] * x[n, ci, i*s + ky - 1, j*s + kx - 1]
//
// with x read as 0 outside the image; y is [N, Cout, (H-1)/s + 1, (W-1)/s + 1].
//
// Register blocking: one invocation computes PX horizontally adjacent output pixels (a "run"
// of one output row) for CO_TILE output channels, so each weight it reads feeds PX
// multiply-adds and each input value CO_TILE. workgroup_id.x picks WG_SIZE consecutive runs
// (row-major over the output: ceil(Wo / PX) runs per row), workgroup_id.y the block of CO_TILE
// output channels, workgroup_id.z the image. The input channels are walked in steps of
// CI_TILE; for each step the block's weights (CO_TILE x CI_TILE x 9, 9 KiB) are staged in
// workgroup memory, where every invocation reads the same address at the same time.
//
// PX = 8, CO_TILE = 16 and 64 invocations were the fastest of the shapes tried on lavapipe:
// on the ImageNet stem (3 -> 32 channels, 224x224, stride 2) about 2.5 times as fast as one
// pixel per invocation and 1.5 times as fast as PX = 4 (`activeshift bench` times the stem).

#import conv3x3_params

const WG_SIZE: u32 = 64u;
// Output pixels per invocation (along a row); the Rust side uses the same number (`PX`).
const PX: u32 = 8u;
// Output channels per invocation; the Rust side uses the same number (`CO_TILE`).
const CO_TILE: u32 = 16u;
// Input channels per step through workgroup memory.
const CI_TILE: u32 = 16u;
const TAPS: u32 = 9u;
const SH_W_LEN: u32 = CO_TILE * CI_TILE * TAPS;

#bindings
0 params: uniform Conv3x3Params
// [N, Cin, H, W]
1 x: read f32
// [Cout, Cin, 3, 3]
2 weight: read f32
// [N, Cout, Ho, Wo]
3 y: read_write f32
#endbindings

// sh_w[(ci * TAPS + ky * 3 + kx) * CO_TILE + co] = w[co0 + co, ci0 + ci, ky, kx] (0 past the end)
var<workgroup> sh_w: array<f32, SH_W_LEN>;

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let co0 = wg.y * CO_TILE;
    let plane_in = params.h * params.w;
    let runs_per_row = (params.wo + PX - 1u) / PX;
    let run = wg.x * WG_SIZE + li;
    // Invocations past the last run still take part in staging the weights and in every
    // barrier; they only skip the arithmetic and the stores.
    let live = run < params.ho * runs_per_row;
    let i = run / runs_per_row;
    let j0 = (run % runs_per_row) * PX;
    let row0 = i32(i * params.stride) - 1;

    var acc: array<array<f32, PX>, CO_TILE>;
    for (var ci0 = 0u; ci0 < params.cin; ci0 += CI_TILE) {
        let cis = min(CI_TILE, params.cin - ci0);
        workgroupBarrier();
        // Consecutive invocations read consecutive weights of one output channel.
        for (var e = li; e < SH_W_LEN; e += WG_SIZE) {
            let co = e / (CI_TILE * TAPS);
            let r = e % (CI_TILE * TAPS);
            let ci = r / TAPS;
            let t = r % TAPS;
            var v = 0.0;
            if (co0 + co < params.cout && ci < cis) {
                v = weight[((co0 + co) * params.cin + ci0 + ci) * TAPS + t];
            }
            sh_w[(ci * TAPS + t) * CO_TILE + co] = v;
        }
        workgroupBarrier();
        if (live) {
            for (var ci = 0u; ci < cis; ci++) {
                let base = (n * params.cin + ci0 + ci) * plane_in;
                for (var ky = 0u; ky < 3u; ky++) {
                    let row = row0 + i32(ky);
                    if (row < 0 || row >= i32(params.h)) {
                        continue;
                    }
                    let row_base = base + u32(row) * params.w;
                    for (var kx = 0u; kx < 3u; kx++) {
                        var v: array<f32, PX>;
                        for (var p = 0u; p < PX; p++) {
                            let col = i32((j0 + p) * params.stride + kx) - 1;
                            // Zero padding, written explicitly: Chrome's WebGPU (Tint on
                            // SwiftShader) keeps `v` from the previous kx iteration here
                            // instead of zero-initializing it again.
                            v[p] = 0.0;
                            if (col >= 0 && col < i32(params.w)) {
                                v[p] = x[row_base + u32(col)];
                            }
                        }
                        let wb = (ci * TAPS + ky * 3u + kx) * CO_TILE;
                        for (var co = 0u; co < CO_TILE; co++) {
                            let wv = sh_w[wb + co];
                            for (var p = 0u; p < PX; p++) {
                                acc[co][p] += wv * v[p];
                            }
                        }
                    }
                }
            }
        }
    }

    if (!live) {
        return;
    }
    let plane_out = params.ho * params.wo;
    let cos = min(CO_TILE, params.cout - co0);
    let pxs = min(PX, params.wo - j0);
    for (var co = 0u; co < cos; co++) {
        let out = (n * params.cout + co0 + co) * plane_out + i * params.wo + j0;
        for (var p = 0u; p < pxs; p++) {
            y[out + p] = acc[co][p];
        }
    }
}
