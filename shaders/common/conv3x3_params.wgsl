// The params of the 3x3 convolution (conv3x3.wgsl) and of its gradients
// (conv3x3_backward_weight.wgsl, conv3x3_backward_input.wgsl); the Rust twin is generated from
// this by build.rs.
struct Conv3x3Params {
#include conv_shape
}
