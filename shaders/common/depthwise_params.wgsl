// Its Rust twin `DepthwiseParams` is generated from this by build.rs (from naga\'s layout).
struct DepthwiseParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
    // ceil(Wo / pixels per invocation): the invocations per output row.
    runs_per_row: u32,
}
