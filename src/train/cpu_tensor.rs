//! The tensor of the CPU training backend.

use crate::cpu::fast;

/// A tensor of [`CpuBackend`](super::CpuBackend): host values (a `Vec<f32>` through `Deref`) whose memory goes
/// back to the thread's buffer pool when dropped, so that a training step reuses the previous
/// step's buffers instead of faulting in fresh pages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuTensor(Vec<f32>);

impl CpuTensor {
    /// The values, leaving the pool out.
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl From<Vec<f32>> for CpuTensor {
    fn from(v: Vec<f32>) -> Self {
        Self(v)
    }
}

impl From<&[f32]> for CpuTensor {
    fn from(v: &[f32]) -> Self {
        let mut t = fast::BufferPool::take(v.len());
        t.copy_from_slice(v);
        Self(t)
    }
}

impl std::ops::Deref for CpuTensor {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.0
    }
}

impl std::ops::DerefMut for CpuTensor {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.0
    }
}

impl Drop for CpuTensor {
    fn drop(&mut self) {
        fast::BufferPool::give([std::mem::take(&mut self.0)]);
    }
}

/// A pooled buffer of `len` values, every one to be overwritten.
pub(crate) fn uninit(len: usize) -> Vec<f32> {
    fast::BufferPool::take(len)
}
