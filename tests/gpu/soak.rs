//! A CI-sized soak: 300 inferences of asnet20-16x1 in one process on a private device; the GPU
//! allocations must not change after warm-up and the resident set must stay flat. The full
//! 10,000-inference run is `cargo run --release --example soak` (result in docs/testing.md).

use crate::common;

#[allow(dead_code)]
#[path = "../../examples/soak.rs"]
mod example;

use activeshift::GpuContext;
use activeshift::model::{ArchConfig, Model};

#[test]
fn memory_stays_flat_over_300_inferences() {
    if common::gpu("memory_stays_flat_over_300_inferences").is_none() {
        return;
    }
    // A private device, so that nothing else allocates on it meanwhile.
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    let model = Model::synthetic(&ArchConfig::builtin("asnet20-16x1").unwrap(), 7).unwrap();
    let r = example::soak(&ctx, &model, 300, 1, false).unwrap();
    eprintln!(
        "soak: warm {:?}, end {:?}, {:.1} ms per inference",
        r.warm, r.end, r.ms_per_inference
    );
    assert_eq!(r.first, r.last, "same input, different output");
    // Every GPU allocation is made during warm-up (buffers, bind groups and the readback
    // buffer are reused), where the backend reports them.
    assert_eq!(r.end.gpu, r.warm.gpu, "GPU allocations grew after warm-up");
    if let (Some(warm), Some(end)) = (r.warm.rss_kib, r.end.rss_kib) {
        // Allocator noise only: a leak of one buffer per inference would add megabytes.
        assert!(
            end <= warm + 4096,
            "resident set grew from {warm} KiB to {end} KiB after warm-up"
        );
    }
}
