// The Active Shift Layer fused into the following 1x1 convolution (docs/design.md §2): the GEMM
// of conv1x1_reg.wgsl whose input pixels are read through the ASL's bilinear shift, so the
// shifted tensor never exists in memory.
//
//   Y[n, co, i, j] = epilogue(sum_ci W[co, ci] * ASL(x)[n, ci, i, j])
//   ASL(x)[n, c, i, j] = bilinear sample of x[n, c] at row i*s + ypos[c], column j*s + xpos[c],
//                        each of the four taps reading 0 outside the image (asl_forward.wgsl).
//
// x is [N, Cin, H, W]; y is [N, Cout, Ho, Wo] with Ho = (H-1)/s+1, Wo = (W-1)/s+1. Each channel's
// taps (integer offsets and fractions) come precomputed by asl_taps.wgsl; a channel whose shift
// is NaN gets offsets far outside every image, so it contributes 0. Same packed weights,
// dispatches and epilogue as conv1x1_reg.wgsl.

#import gemm_params
#import gemm_store_scalar

@group(0) @binding(0) var<uniform> params: GemmParams;
// [N, Cin, H, W]
@group(0) @binding(1) var<storage, read> x: array<f32>;
#import gemm_slab
// [N, Cout, Ho, Wo]; bound to a placeholder when the residual flag is off.
@group(0) @binding(5) var<storage, read> residual: array<f32>;
// [N, Cout, Ho, Wo]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
// Per input channel: (floor(xpos), floor(ypos), xpos - floor(xpos), ypos - floor(ypos)).
@group(0) @binding(7) var<uniform> taps: array<vec4<f32>, 4096>;

// The 4 pixels (rows `r`, columns `c` before the shift) of channel plane `base`, shifted.
fn shifted(base: u32, ci: u32, r: vec4<i32>, c: vec4<i32>) -> vec4<f32> {
    let t = taps[ci];
    let row = r + vec4<i32>(i32(t.y));
    let col = c + vec4<i32>(i32(t.x));
    let h = i32(params.h);
    let w = i32(params.w);
    // Each tap reads 0 outside the image: clamp the address, then mask the value.
    let in_r0 = (row >= vec4<i32>(0)) & (row < vec4<i32>(h));
    let in_r1 = (row >= vec4<i32>(-1)) & (row < vec4<i32>(h - 1));
    let in_c0 = (col >= vec4<i32>(0)) & (col < vec4<i32>(w));
    let in_c1 = (col >= vec4<i32>(-1)) & (col < vec4<i32>(w - 1));
    let r0 = vec4<u32>(clamp(row, vec4<i32>(0), vec4<i32>(h - 1)));
    let r1 = vec4<u32>(clamp(row + vec4<i32>(1), vec4<i32>(0), vec4<i32>(h - 1)));
    let c0 = vec4<u32>(clamp(col, vec4<i32>(0), vec4<i32>(w - 1)));
    let c1 = vec4<u32>(clamp(col + vec4<i32>(1), vec4<i32>(0), vec4<i32>(w - 1)));
    let i00 = vec4<u32>(base) + r0 * params.w + c0;
    let i01 = vec4<u32>(base) + r0 * params.w + c1;
    let i10 = vec4<u32>(base) + r1 * params.w + c0;
    let i11 = vec4<u32>(base) + r1 * params.w + c1;
    let z = vec4<f32>(0.0);
    let q00 = select(z, vec4<f32>(x[i00.x], x[i00.y], x[i00.z], x[i00.w]), in_r0 & in_c0);
    let q01 = select(z, vec4<f32>(x[i01.x], x[i01.y], x[i01.z], x[i01.w]), in_r0 & in_c1);
    let q10 = select(z, vec4<f32>(x[i10.x], x[i10.y], x[i10.z], x[i10.w]), in_r1 & in_c0);
    let q11 = select(z, vec4<f32>(x[i11.x], x[i11.y], x[i11.z], x[i11.w]), in_r1 & in_c1);
    let top = (1.0 - t.z) * q00 + t.z * q01;
    let bottom = (1.0 - t.z) * q10 + t.z * q11;
    return (1.0 - t.w) * top + t.w * bottom;
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let n = wg.z;
    let plane_in = params.h * params.w;
    let plane_out = params.ho * params.wo;
    // Invocation g of the image owns pixels 4q .. 4q + 3 of row block rb (ROWS output channels).
    let groups = (plane_out + 3u) / 4u;
    let g = wg.x * WG_SIZE + li;
    let rb = g / groups;
    let p0 = (g % groups) * 4u;
    if (rb * ROWS >= params.nrows) {
        return;
    }
    // Unshifted source rows and columns of the 4 pixels (pixels past the plane compute on the
    // last one and write nothing).
    var r: vec4<i32>;
    var c: vec4<i32>;
    for (var e = 0u; e < 4u; e++) {
        let p = min(p0 + e, plane_out - 1u);
        r[e] = i32((p / params.wo) * params.stride);
        c[e] = i32((p % params.wo) * params.stride);
    }
    let x_base = n * params.cin * plane_in;
    let kv = params.kc / 4u;
    let wb = rb * ROWS * kv;
    let full_end = params.k0 + (params.k1 - params.k0) / 4u * 4u;

    {{decl}}
    var w: vec4<f32>;
    for (var ci = params.k0; ci < full_end; ci += 4u) {
        let b0 = x_base + ci * plane_in;
        let x0 = shifted(b0, ci, r, c);
        let x1 = shifted(b0 + plane_in, ci + 1u, r, c);
        let x2 = shifted(b0 + 2u * plane_in, ci + 2u, r, c);
        let x3 = shifted(b0 + 3u * plane_in, ci + 3u, r, c);
        let k = (ci - params.k0) / 4u;
        {{rows4}}
    }
    // The last 1..3 input channels when the chunk is not a multiple of 4 wide.
    for (var ci = full_end; ci < params.k1; ci++) {
        let xv = shifted(x_base + ci * plane_in, ci, r, c);
        let k = (ci - params.k0) / 4u;
        let lane = (ci - params.k0) % 4u;
        {{rows1}}
    }

#include gemm_epilogue_scalar
