// The workgroup-tiled 1x1 GEMMs' input affine: when flag bit 4 is set, every input
// value goes through the per-channel affine + ReLU (the block's pre-activation folded into the
// convolution that reads it). Needs `params` (with `flags`) in the kernel that imports it.

const FLAG_INPUT_AFFINE: u32 = 16u;

#bindings
// [Cin] each: the per-channel affine + ReLU applied to every input value when flag bit 4 is
// set (the block's pre-activation folded into the convolution that reads it); bound to a
// placeholder otherwise.
8 in_scale: read f32
9 in_bias: read f32
#endbindings

// Input channel ci's value `v` as the GEMM reads it.
fn input(v: f32, ci: u32) -> f32 {
    if ((params.flags & FLAG_INPUT_AFFINE) == 0u) {
        return v;
    }
    return max(in_scale[ci] * v + in_bias[ci], 0.0);
}
