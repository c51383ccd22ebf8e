// Its Rust twin `AslParams` is generated from this by build.rs (from naga\'s layout).
struct AslParams {
#include plane_shape
    // asl_backward_shift.wgsl: number of chunks the N*Ho*Wo positions of a channel are split
    // into (unused elsewhere).
    chunks: u32,
}
