//! The model shipped with activeshift: ASNet-20 26x1 (89,788 parameters) trained by
//! `activeshift train` on Fashion-MNIST (the command and its test accuracy are in docs/training.md). It is the default of
//! `activeshift classify` and of the web demo.

use super::file::Model;
use crate::error::Result;

/// The shipped model file (safetensors with config, labels and preprocessing).
pub const DEFAULT_MODEL_BYTES: &[u8] =
    include_bytes!("../../models/fashion-mnist-asnet20-26x1.safetensors");

impl Model {
    /// The model embedded in the library (Fashion-MNIST ASNet-20 26x1).
    pub fn embedded_default() -> Result<Model> {
        Model::from_safetensors(DEFAULT_MODEL_BYTES)
    }
}
