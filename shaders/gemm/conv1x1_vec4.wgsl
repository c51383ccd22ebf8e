// 1x1 convolution, stride 1, as a register-tiled GEMM with vectorised loads: the fast
// variant for CPU-like adapters (lavapipe), where every load whose address varies across
// invocations costs a loop over the SIMD lanes whatever its width (so one vec4 load costs about
// what a scalar load does), and a dynamically indexed private array lives in memory.
//
//   Y[n, co, p] = epilogue(sum_ci W[co, ci] * X[n, ci, p])
//
// Needs H*W divisible by 4: pixels are read and written as vec4s. Each invocation owns 4
// consecutive pixels and ROWS output channels; the weights come packed into uniform-buffer
// slabs by conv1x1_pack.wgsl, one dispatch per slab (a block of output channels times a chunk
// of at most 512 input channels for `main`, 256 for `main_wide`; the chunks after the first add
// into y, the last applies the epilogue).

#import gemm_params

@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W] as vec4s along the plane.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#import gemm_slab
// [N, Cout, H, W] as vec4s; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<vec4<f32>>;
// [N, Cout, H, W] as vec4s.
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>;
#import gemm_whole

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane4 = params.h * params.w / 4u;
#ifdef whole
    // Invocation g of the image owns pixel vec4 g of row block wg.y (ROWS output channels).
    let rb = wg.y;
    let q = wg.x * WG_SIZE + li;
    if (q >= plane4 || rb * ROWS >= params.nrows) {
        return;
    }
#else
    // Invocation g of the image owns pixel vec4 q of row block rb (ROWS output channels).
    let g = wg.x * WG_SIZE + li;
    let rb = g / plane4;
    let q = g % plane4;
    if (rb * ROWS >= params.nrows) {
        return;
    }
#endif
    let x_base = n * params.cin * plane4 + q;
    let kv = params.kc / 4u;
    let wb = rb * ROWS * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

    {{decl}}
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let xo = x_base + ci * plane4;
        let x0 = input4(x[xo], ci);
        let x1 = input4(x[xo + plane4], ci + 1u);
        let x2 = input4(x[xo + 2u * plane4], ci + 2u);
        let x3 = input4(x[xo + 3u * plane4], ci + 3u);
        let k = (ci - params.k0) / 4u;
        {{rows4}}
    }
    // The last 1..3 input channels when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = input4(x[x_base + ci * plane4], ci);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
        {{rows1}}
    }

#include gemm_epilogue_vec4
