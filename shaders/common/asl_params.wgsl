// Its Rust twin `AslParams` is generated from this by build.rs (from naga\'s layout).
struct AslParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
    // asl_backward_shift.wgsl: number of chunks the N*Ho*Wo positions of a channel are split
    // into (unused elsewhere).
    chunks: u32,
}
