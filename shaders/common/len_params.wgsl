// The params of the element-wise kernels that need only a length (add.wgsl,
// global_avg_pool_backward.wgsl); `LenParams` on the Rust side is generated from this.
struct LenParams {
    // Elements: N * C * H * W.
    len: u32,
    // H * W (global_avg_pool_backward.wgsl; unused by add.wgsl).
    plane: u32,
    _pad0: u32,
    _pad1: u32,
}
