// Active Shift Layer, forward (docs/design.md §1).
//
//   out[n, c, i, j] = bilinear sample of x[n, c] at row i*s + ypos[c], column j*s + xpos[c],
//                     each of the four taps reading 0 outside the image.
//
// One invocation per output pixel; workgroup_id.y is the channel, workgroup_id.z the image, so
// every invocation of a workgroup shares one shift. `main` runs 256 invocations per workgroup,
// `main_small` 64, for planes of at most 192 pixels (a 7x7 plane would leave 207 of 256
// invocations idle, which a CPU adapter still steps through).

// With VEC4 (asl_forward_vec4.wgsl: stride 1, W divisible by 4; same results and shift rules),
// each invocation writes 4 adjacent output pixels j0 .. j0+3 of one row (j0 a multiple of 4) as
// one vec4; their taps lie in two aligned vec4s of each of the two input rows involved, so 4
// vec4 loads replace 16 scalar ones.
//
// With STRIPS (asl_forward_rows.wgsl: stride 1, W divisible by 4, for CPU adapters such as
// lavapipe and SwiftShader; same results and shift rules) the kernel slides along rows and
// columns. On these adapters a load whose address differs between invocations costs a loop over
// the SIMD lanes, so loads, not arithmetic, set the speed. Each invocation owns a strip of 8
// output vec4s (32 pixels) of one channel over up to `rows` consecutive output rows. It
// interpolates every input row it needs horizontally once (9 aligned vec4 loads give the 8 vec4s
// of the strip) and keeps the last one for the next output row, which shares it: an output row
// costs one new input row, 1.125 vec4 loads per output vec4 instead of the 4 of VEC4. Invocation
// g of a plane owns strip g % strips of row chunk g / strips.

#ifdef STRIPS
// Its Rust twin `RowsParams` is generated from this by build.rs (from naga\'s layout).
struct RowsParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    // Output rows per invocation (the last chunk of a plane may have fewer).
    rows: u32,
    // Strips of 8 vec4s per row: ceil(w / 32).
    strips: u32,
    // Row chunks per plane: ceil(h / rows).
    chunks: u32,
    _pad: u32,
}

const WG_SIZE: u32 = 64u;
alias Elem = vec4<f32>;
#else
#import asl_params
#ifdef VEC4
const WG_SIZE: u32 = 64u;
alias Elem = vec4<f32>;
#else
const WG_SIZE: u32 = 256u;
alias Elem = f32;
#endif
#endif
#import shift

#bindings
#ifdef STRIPS
0 params: uniform RowsParams
#else
0 params: uniform AslParams
#endif
// [N, C, H, W] (as vec4s along the rows with VEC4 or STRIPS)
1 x: read Elem
// [2, C]: xpos (horizontal) for every channel, then ypos (vertical).
2 shift: read f32
// [N, C, Ho, Wo] (as vec4s with VEC4 or STRIPS)
3 out: read_write Elem
#endbindings

#ifdef STRIPS
// The aligned vec4 `blk` of input row `r` of the plane at vec4 `base4`; zero outside the image.
fn load(base4: u32, r: i32, blk: i32) -> vec4<f32> {
    let w4 = i32(params.w / 4u);
    let inside = r >= 0 && r < i32(params.h) && blk >= 0 && blk < w4;
    let idx = base4 + u32(clamp(r, 0, i32(params.h) - 1)) * u32(w4) + u32(clamp(blk, 0, w4 - 1));
    return select(vec4<f32>(0.0), x[idx], inside);
}

// The 4 pixels o .. o+3 of the 8 in (a, b) (0 <= o < 4) interpolated with their right
// neighbours o+1 .. o+4 by weight tx.
fn lerp_window(a: vec4<f32>, b: vec4<f32>, o: i32, tx: f32) -> vec4<f32> {
    let s1 = vec4<f32>(a.yzw, b.x);
    let s2 = vec4<f32>(a.zw, b.xy);
    let s3 = vec4<f32>(a.w, b.xyz);
    let lo = select(select(select(a, s1, o == 1), s2, o == 2), s3, o == 3);
    let hi = select(select(select(s1, s2, o == 1), s3, o == 2), b, o == 3);
    return (1.0 - tx) * lo + tx * hi;
}

// One input row interpolated horizontally over the 4 output vec4s of a strip.
struct Strip {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
}

// Input row `r`, interpolated horizontally for the strip whose left taps start `o` pixels into
// input vec4 `blk`.
fn strip_of_row(base4: u32, r: i32, blk: i32, o: i32, tx: f32) -> Strip {
    let l0 = load(base4, r, blk);
    let l1 = load(base4, r, blk + 1);
    let l2 = load(base4, r, blk + 2);
    let l3 = load(base4, r, blk + 3);
    let l4 = load(base4, r, blk + 4);
    let l5 = load(base4, r, blk + 5);
    let l6 = load(base4, r, blk + 6);
    let l7 = load(base4, r, blk + 7);
    let l8 = load(base4, r, blk + 8);
    return Strip(
        lerp_window(l0, l1, o, tx),
        lerp_window(l1, l2, o, tx),
        lerp_window(l2, l3, o, tx),
        lerp_window(l3, l4, o, tx),
        lerp_window(l4, l5, o, tx),
        lerp_window(l5, l6, o, tx),
        lerp_window(l6, l7, o, tx),
        lerp_window(l7, l8, o, tx),
    );
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.y;
    let n = wg.z;
    let g = wg.x * WG_SIZE + li;
    if (g >= params.strips * params.chunks) {
        return;
    }
    let w4 = params.w / 4u;
    let base4 = (n * params.c + c) * params.h * w4;
    // First output vec4 column of the strip, first and end output rows of the chunk.
    let b0 = (g % params.strips) * 8u;
    let i0 = (g / params.strips) * params.rows;
    let i1 = min(i0 + params.rows, params.h);
    let xs = shift[c];
    let ys = shift[params.c + c];
    let nan = shift_is_nan(xs) || shift_is_nan(ys);
    let xp = select(limit_shift(xs), 0.0, nan);
    let yp = select(limit_shift(ys), 0.0, nan);
    let fx = floor(xp);
    let fy = floor(yp);
    let tx = xp - fx;
    let ty = yp - fy;
    // The left tap of output column 4 * b0 is input column 4 * b0 + fx = 4 * blk + o.
    let col = i32(4u * b0) + i32(fx);
    let o = ((col % 4) + 4) % 4;
    let blk = (col - o) / 4;
    // A NaN shift zeroes its channel.
    let zero = vec4<f32>(0.0);
    var top = strip_of_row(base4, i32(i0) + i32(fy), blk, o, tx);
    for (var i = i0; i < i1; i++) {
        let bottom = strip_of_row(base4, i32(i) + i32(fy) + 1, blk, o, tx);
        let at = base4 + i * w4 + b0;
        out[at] = select((1.0 - ty) * top.v0 + ty * bottom.v0, zero, nan);
        if (b0 + 1u < w4) {
            out[at + 1u] = select((1.0 - ty) * top.v1 + ty * bottom.v1, zero, nan);
        }
        if (b0 + 2u < w4) {
            out[at + 2u] = select((1.0 - ty) * top.v2 + ty * bottom.v2, zero, nan);
        }
        if (b0 + 3u < w4) {
            out[at + 3u] = select((1.0 - ty) * top.v3 + ty * bottom.v3, zero, nan);
        }
        if (b0 + 4u < w4) {
            out[at + 4u] = select((1.0 - ty) * top.v4 + ty * bottom.v4, zero, nan);
        }
        if (b0 + 5u < w4) {
            out[at + 5u] = select((1.0 - ty) * top.v5 + ty * bottom.v5, zero, nan);
        }
        if (b0 + 6u < w4) {
            out[at + 6u] = select((1.0 - ty) * top.v6 + ty * bottom.v6, zero, nan);
        }
        if (b0 + 7u < w4) {
            out[at + 7u] = select((1.0 - ty) * top.v7 + ty * bottom.v7, zero, nan);
        }
        top = bottom;
    }
}
#else
#ifdef VEC4
#import row_lerp

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let c = wg.y;
    let n = wg.z;
    let plane4 = params.h * params.w / 4u;
    let q = wg.x * WG_SIZE + li;
    if (q >= plane4) {
        return;
    }
    let base4 = (n * params.c + c) * plane4;
    let xs = shift[c];
    let ys = shift[params.c + c];
    if (shift_is_nan(xs) || shift_is_nan(ys)) {
        out[base4 + q] = vec4<f32>(0.0);
        return;
    }
    let xp = limit_shift(xs);
    let yp = limit_shift(ys);
    let fx = floor(xp);
    let fy = floor(yp);
    let tx = xp - fx;
    let ty = yp - fy;
    let p0 = q * 4u;
    let i = i32(p0 / params.w);
    let col = i32(p0 % params.w) + i32(fx);
    let o = ((col % 4) + 4) % 4;
    let blk = (col - o) / 4;
    let r = i + i32(fy);
    out[base4 + q] = (1.0 - ty) * row_lerp(base4, r, blk, o, tx) + ty * row_lerp(base4, r + 1, blk, o, tx);
}
#else
#import tap

// Output pixel idx of channel c of image n.
fn forward_at(c: u32, n: u32, idx: u32) {
    if (idx >= params.ho * params.wo) {
        return;
    }
    let i = idx / params.wo;
    let j = idx % params.wo;

#include channel_shift
    if (!live) {
        out[(n * params.c + c) * params.ho * params.wo + idx] = 0.0;
        return;
    }

    let row = i32(i * params.stride) + i32(fy);
    let col = i32(j * params.stride) + i32(fx);
    let base = (n * params.c + c) * params.h * params.w;
    let q00 = tap(base, row, col);
    let q01 = tap(base, row, col + 1);
    let q10 = tap(base, row + 1, col);
    let q11 = tap(base, row + 1, col + 1);

    let top = (1.0 - tx) * q00 + tx * q01;
    let bottom = (1.0 - tx) * q10 + tx * q11;
    out[(n * params.c + c) * params.ho * params.wo + idx] = (1.0 - ty) * top + ty * bottom;
}

@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    forward_at(wg.y, wg.z, wg.x * WG_SIZE + li);
}

@compute @workgroup_size(64)
fn main_small(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    forward_at(wg.y, wg.z, wg.x * 64u + li);
}
#endif
#endif
