// Its Rust twin `DepthwiseParams` is generated from this by build.rs (from naga\'s layout).
struct DepthwiseParams {
#include plane_shape
    // ceil(Wo / pixels per invocation): the invocations per output row.
    runs_per_row: u32,
}
