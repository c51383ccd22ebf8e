// Input row `r` of the channel plane starting at vec4 `base4`, interpolated horizontally with
// weight `tx` for the 4 pixels whose left taps are columns 4 * blk + o .. 4 * blk + o + 3
// (0 <= o < 4); zero outside the image. Needs `x: array<vec4<f32>>` and `params` (with `h` and
// `w`, a multiple of 4) in the kernel that imports it.

fn row_lerp(base4: u32, r: i32, blk: i32, o: i32, tx: f32) -> vec4<f32> {
    let w4 = i32(params.w / 4u);
    let row_in = r >= 0 && r < i32(params.h);
    let row = base4 + u32(clamp(r, 0, i32(params.h) - 1)) * u32(w4);
    let z = vec4<f32>(0.0);
    let a = select(z, x[row + u32(clamp(blk, 0, w4 - 1))], row_in && blk >= 0 && blk < w4);
    let b = select(z, x[row + u32(clamp(blk + 1, 0, w4 - 1))], row_in && blk + 1 >= 0 && blk + 1 < w4);
    let s1 = vec4<f32>(a.yzw, b.x);
    let s2 = vec4<f32>(a.zw, b.xy);
    let s3 = vec4<f32>(a.w, b.xyz);
    let lo = select(select(select(a, s1, o == 1), s2, o == 2), s3, o == 3);
    let hi = select(select(select(s1, s2, o == 1), s3, o == 2), b, o == 3);
    return (1.0 - tx) * lo + tx * hi;
}
