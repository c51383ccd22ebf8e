#bindings
// The same packed weights as one storage array, for the `_whole` entry points: rows padded to a
// multiple of 64 output channels, kc = K rounded up to 4 (one dispatch covers all of them).
7 wall: read vec4<f32>
// [Cin] each: the per-channel affine + ReLU applied to every input value when flag bit 4 is
// set (the block's pre-activation folded into the convolution that reads it); bound to a
// placeholder otherwise.
8 in_scale: read f32
9 in_bias: read f32
#endbindings

const FLAG_INPUT_AFFINE: u32 = 16u;

// Input channel ci's values `v` as the GEMM reads them.
fn input4(v: vec4<f32>, ci: u32) -> vec4<f32> {
    if ((params.flags & FLAG_INPUT_AFFINE) == 0u) {
        return v;
    }
    return max(in_scale[ci] * v + vec4<f32>(in_bias[ci]), vec4<f32>(0.0));
}
