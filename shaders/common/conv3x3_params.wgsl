// The params of the 3x3 convolution (conv3x3.wgsl) and of its weight gradient
// (conv3x3_backward_weight.wgsl); the Rust twin is generated from this by build.rs.
struct Conv3x3Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
}
