// Its Rust twin `GemmParams` is generated from this by build.rs (from naga\'s layout).
struct GemmParams {
#include conv_shape
    // bit 0: affine, bit 1: residual add, bit 2: ReLU (set on the last K chunk only);
    // bit 3: add to what an earlier K chunk left in y; bit 4 (the 1x1 GEMMs only): read each
    // input value through max(in_scale[ci] * x + in_bias[ci], 0).
    flags: u32,
    // First output channel of this dispatch's weight slab.
    row0: u32,
    // Floats per packed weight row (the K chunk width, a multiple of 4).
    kc: u32,
    // This dispatch's input channels: k0 <= ci < k1.
    k0: u32,
    k1: u32,
    // Output channels of this dispatch's slab (from row0).
    nrows: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG_SIZE: u32 = 32u;
#import gemm_flags
