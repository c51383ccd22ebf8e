// Its Rust twin `CopyParams` is generated from this by build.rs (from naga\'s layout).
struct CopyParams {
    len: u32,
    // Invocations per row of the 2D dispatch (groups.x * WG_SIZE).
    row: u32,
    _pad0: u32,
    _pad1: u32,
}
