// Its Rust twin `Conv1x1Params` is generated from this by build.rs (from naga\'s layout).
struct Conv1x1Params {
#include conv_shape
    // bit 0: affine, bit 1: residual add, bit 2: ReLU; bit 4: read each input value through
    // max(in_scale[ci] * x + in_bias[ci], 0).
    flags: u32,
    // conv1x1_backward_weight.wgsl only: output rows per chunk and the number of chunks.
    k_chunk: u32,
    splits: u32,
    _pad: u32,
}
