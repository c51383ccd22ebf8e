// Shifts are clamped to +-2^20 pixels before use: any larger shift already reads nothing but
// zero fill, and the clamp keeps every integer index far from i32 overflow.
const SHIFT_LIMIT: f32 = 1048576.0;

// Shifts as the kernels use them (same in src/cpu/asl.rs): a NaN xpos or ypos makes its
// channel read nothing (output 0, both gradients 0); +-Inf and finite values beyond
// +-SHIFT_LIMIT are clamped to +-SHIFT_LIMIT, which reads only zero fill for any image narrower
// than 2^20 pixels. Tested on the bits: WGSL lets implementations assume floats are finite, so
// `x != x` and clamp() of NaN or Inf are not reliable.
fn shift_is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn limit_shift(v: f32) -> f32 {
    let bits = bitcast<u32>(v);
    if ((bits & 0x7fffffffu) >= 0x7f800000u) {
        return select(SHIFT_LIMIT, -SHIFT_LIMIT, (bits >> 31u) == 1u);
    }
    return clamp(v, -SHIFT_LIMIT, SHIFT_LIMIT);
}
