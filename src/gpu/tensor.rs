//! f32 tensors living in GPU storage buffers.

use super::GpuContext;
use crate::error::{Error, Result};
use crate::shape::Shape4;
use wgpu::util::DeviceExt;

/// An f32 tensor in a GPU storage buffer: a shape (row-major, activations in NCHW) and the
/// buffer holding exactly that many elements.
#[derive(Debug, Clone)]
pub struct GpuTensor {
    dims: Vec<usize>,
    buffer: wgpu::Buffer,
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

fn byte_size(ctx: &GpuContext, dims: &[usize]) -> Result<u64> {
    let elems = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid("tensor", format!("shape {dims:?} overflows")))?;
    if elems == 0 {
        return Err(Error::shape(
            "tensor",
            "shape",
            "at least one element",
            format!("{dims:?}"),
        ));
    }
    let bytes = (elems as u64).saturating_mul(4);
    let limit = ctx.device().limits().max_storage_buffer_binding_size;
    if bytes > limit {
        return Err(Error::DeviceLimit {
            op: "tensor",
            what: "bytes per storage buffer binding",
            needed: bytes,
            limit,
        });
    }
    Ok(bytes)
}

impl GpuTensor {
    /// Upload `data` as a tensor of shape `dims`.
    pub fn from_slice(ctx: &GpuContext, dims: &[usize], data: &[f32]) -> Result<Self> {
        let bytes = byte_size(ctx, dims)?;
        if data.len() as u64 * 4 != bytes {
            return Err(Error::shape(
                "tensor upload",
                "data",
                format!("{} elements for shape {dims:?}", bytes / 4),
                format!("{} elements", data.len()),
            ));
        }
        let buffer = ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("activeshift tensor"),
                contents: bytemuck::cast_slice(data),
                usage: USAGE,
            });
        Ok(Self {
            dims: dims.to_vec(),
            buffer,
        })
    }

    /// View a buffer that the caller (typically a host application, see `docs/embedding.md`)
    /// owns as a tensor of shape `dims`, without copying: kernels bind the buffer itself.
    ///
    /// The buffer must have `STORAGE` usage, hold at least the tensor's bytes (its first
    /// `4 * len` bytes are the tensor; the rest is never touched) and, since kernels bind it
    /// whole, be no larger than the device's `max_storage_buffer_binding_size`. Add `COPY_SRC`
    /// to use [`GpuTensor::read`] and `COPY_DST` for [`GpuTensor::write`]. It must belong to
    /// the context's device (wgpu reports a validation error otherwise).
    pub fn from_buffer(ctx: &GpuContext, buffer: wgpu::Buffer, dims: &[usize]) -> Result<Self> {
        const OP: &str = "tensor from buffer";
        let bytes = byte_size(ctx, dims)?;
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::invalid(
                OP,
                format!(
                    "the buffer needs STORAGE usage to be bound by kernels, it has {}",
                    usage_names(buffer.usage())
                ),
            ));
        }
        if buffer.size() < bytes {
            return Err(Error::shape(
                OP,
                "buffer size",
                format!("at least {bytes} bytes for shape {dims:?}"),
                format!("{} bytes", buffer.size()),
            ));
        }
        let limit = ctx.device().limits().max_storage_buffer_binding_size;
        if buffer.size() > limit {
            return Err(Error::DeviceLimit {
                op: OP,
                what: "bytes per storage buffer binding (the whole buffer is bound)",
                needed: buffer.size(),
                limit,
            });
        }
        Ok(Self {
            dims: dims.to_vec(),
            buffer,
        })
    }

    /// A zero-filled tensor of shape `dims`.
    pub fn zeros(ctx: &GpuContext, dims: &[usize]) -> Result<Self> {
        let size = byte_size(ctx, dims)?;
        let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("activeshift tensor"),
            size,
            usage: USAGE,
            mapped_at_creation: false,
        });
        Ok(Self {
            dims: dims.to_vec(),
            buffer,
        })
    }

    /// A tensor of shape `dims` with every element `value` (tests use NaN to poison outputs).
    pub fn filled(ctx: &GpuContext, dims: &[usize], value: f32) -> Result<Self> {
        let len = byte_size(ctx, dims)? as usize / 4;
        Self::from_slice(ctx, dims, &vec![value; len])
    }

    /// Overwrite the contents with `data` (queued; takes effect before the next submission).
    pub fn write(&self, ctx: &GpuContext, data: &[f32]) -> Result<()> {
        require_usage("tensor write", &self.buffer, wgpu::BufferUsages::COPY_DST)?;
        if data.len() != self.len() {
            return Err(Error::shape(
                "tensor write",
                "data",
                format!("{} elements for shape {:?}", self.len(), self.dims),
                format!("{} elements", data.len()),
            ));
        }
        ctx.queue()
            .write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Copy the contents back to the host. Never blocks on the web: on native the device is
    /// polled until the copy is done, in the browser the future resolves when the browser has
    /// mapped the buffer.
    pub async fn read(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let mut all = read_many(ctx, &[self]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`GpuTensor::read`], blocking the calling thread (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        pollster::block_on(self.read(ctx))
    }

    /// The same buffer under another shape with the same number of elements.
    pub fn reshape(&self, dims: &[usize]) -> Result<Self> {
        if dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(self.len()) {
            return Err(Error::shape(
                "tensor reshape",
                "shape",
                format!("{} elements", self.len()),
                format!("{dims:?}"),
            ));
        }
        Ok(Self {
            dims: dims.to_vec(),
            buffer: self.buffer.clone(),
        })
    }

    /// The shape.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The shape as NCHW, or a shape error naming `op` and `what`.
    pub fn shape4(&self, op: &'static str, what: &str) -> Result<Shape4> {
        Shape4::from_dims(op, what, &self.dims)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Always false: a tensor holds at least one element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The storage buffer (usage `STORAGE | COPY_SRC | COPY_DST`).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

/// An error unless `buffer` has `usage` (a buffer wrapped by [`GpuTensor::from_buffer`] may
/// lack it).
fn require_usage(op: &'static str, buffer: &wgpu::Buffer, usage: wgpu::BufferUsages) -> Result<()> {
    if buffer.usage().contains(usage) {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!(
                "the buffer needs {} usage, it has {}",
                usage_names(usage),
                usage_names(buffer.usage())
            ),
        ))
    }
}

/// Buffer usages as `STORAGE | COPY_DST` (`none` when empty).
pub(crate) fn usage_names(usage: wgpu::BufferUsages) -> String {
    let names: Vec<&str> = usage.iter_names().map(|(name, _)| name).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" | ")
    }
}

/// Copy several tensors back to the host in one submission and one mapping (a training step
/// downloads all its gradients at once).
pub async fn read_many(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
    for t in tensors {
        require_usage("tensor read", &t.buffer, wgpu::BufferUsages::COPY_SRC)?;
    }
    let total: u64 = tensors.iter().map(|t| t.len() as u64 * 4).sum();
    if total == 0 {
        return Ok(tensors.iter().map(|_| Vec::new()).collect());
    }
    let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("activeshift readback"),
        size: total,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.submit(|enc| {
        let mut offset = 0;
        for t in tensors {
            let size = t.len() as u64 * 4;
            if size > 0 {
                enc.copy_buffer_to_buffer(&t.buffer, 0, &staging, offset, size);
            }
            offset += size;
        }
        Ok(())
    })?;
    let all = read_mapped(ctx, &staging).await?;
    let mut out = Vec::with_capacity(tensors.len());
    let mut rest = &all[..];
    for t in tensors {
        let (head, tail) = rest.split_at(t.len());
        out.push(head.to_vec());
        rest = tail;
    }
    Ok(out)
}

/// [`read_many`], blocking the calling thread (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_many_blocking(ctx: &GpuContext, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
    pollster::block_on(read_many(ctx, tensors))
}

/// Map a `MAP_READ` buffer, copy its f32 contents out and unmap it. On native the device is
/// polled until the mapping is done; on the web the future resolves when the browser has mapped
/// the buffer.
pub(crate) async fn read_mapped(ctx: &GpuContext, staging: &wgpu::Buffer) -> Result<Vec<f32>> {
    Ok(bytemuck::pod_collect_to_vec(&map_read(ctx, staging).await?))
}

/// [`read_mapped`]'s bytes.
pub(crate) async fn map_read(ctx: &GpuContext, staging: &wgpu::Buffer) -> Result<Vec<u8>> {
    let (tx, rx) = futures_channel::oneshot::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    ctx.device()
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Readback(e.to_string()))?;
    rx.await
        .map_err(|_| Error::Readback("the map callback was dropped".into()))?
        .map_err(|e| Error::Readback(e.to_string()))?;
    ctx.check_device()?;
    let data = staging
        .get_mapped_range(..)
        .map_err(|e| Error::Readback(e.to_string()))?
        .to_vec();
    staging.unmap();
    Ok(data)
}
