//! Models with deterministic pseudo-random weights, for examples, tests and benchmarks that
//! must run without a trained weight file.

use super::config::ArchConfig;
use super::file::{HostTensor, Model};
use crate::error::Result;
use std::collections::BTreeMap;

/// A value uniform in `[-1, 1)` from a 64-bit counter (SplitMix64 finalizer).
fn unit(seed: u64, i: u64) -> f32 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // 24 random bits -> [0, 1) exactly representable in f32.
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

impl Model {
    /// A model of `config` with weights drawn deterministically from `seed` (the same on every
    /// platform), at the scales a trained network has: affine scales in `[0.5, 1.5)`, biases in
    /// `[-0.2, 0.2)`, shifts in `[-2, 2)` and convolution weights uniform with variance
    /// `1 / fan_in`. Its predictions mean nothing; it exercises every layer.
    pub fn synthetic(config: &ArchConfig, seed: u64) -> Result<Model> {
        config.validate()?;
        let mut params = BTreeMap::new();
        for (t, (name, dims)) in config.param_shapes().into_iter().enumerate() {
            let len: usize = dims.iter().product();
            let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
            let (mid, half) = if name.ends_with(".scale") {
                (1.0, 0.5)
            } else if name.ends_with(".bias") {
                (0.0, 0.2)
            } else if name.ends_with(".shift") {
                (0.0, 2.0)
            } else {
                (0.0, (3.0 / fan_in as f32).sqrt())
            };
            let stream = seed ^ ((t as u64 + 1) << 40);
            let data = (0..len as u64)
                .map(|i| mid + half * unit(stream, i))
                .collect();
            params.insert(name, HostTensor::new(dims, data)?);
        }
        Model::new(config.clone(), Vec::new(), params)
    }
}
