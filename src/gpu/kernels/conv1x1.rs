//! The 1x1 convolution GEMM with its epilogue, and the two GEMMs of its backward pass.

use super::{Dispatch, Pipeline, expect_dims, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Output tile of the GEMM kernels (`TILE_M` x `TILE_N` in their WGSL).
const TILE: usize = 64;
/// Step along K of the GEMM kernels (`TILE_K` in their WGSL).
const TILE_K: usize = 16;
const FLAG_AFFINE: u32 = 1;
const FLAG_RESIDUAL: u32 = 2;
const FLAG_RELU: u32 = 4;

/// Mirrors `struct Conv1x1Params` in `shaders/conv1x1*.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Conv1x1Params {
    n: u32,
    cin: u32,
    cout: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
    flags: u32,
    _pad: [u32; 3],
}

impl Conv1x1Params {
    fn new(op: &'static str, xs: Shape4, cout: usize, stride: usize, flags: u32) -> Result<Self> {
        check_stride(op, stride)?;
        check_nonempty(op, "input", xs)?;
        if cout == 0 {
            return Err(crate::Error::invalid(op, "zero output channels"));
        }
        let ys = xs.strided(cout, stride);
        Ok(Self {
            n: u32_of(op, "batch size", xs.n)?,
            cin: u32_of(op, "input channels", xs.c)?,
            cout: u32_of(op, "output channels", cout)?,
            h: u32_of(op, "height", xs.h)?,
            w: u32_of(op, "width", xs.w)?,
            ho: u32_of(op, "output height", ys.h)?,
            wo: u32_of(op, "output width", ys.w)?,
            stride: u32_of(op, "stride", stride)?,
            flags,
            _pad: [0; 3],
        })
    }
}

/// What [`Conv1x1`] applies to the GEMM result, in this order: per-output-channel affine
/// (`y = scale[co] * y + bias[co]`), residual add, ReLU.
#[derive(Clone, Copy, Default)]
pub struct Conv1x1Epilogue<'a> {
    /// `(scale, bias)`, each `[Cout]`.
    pub affine: Option<(&'a GpuTensor, &'a GpuTensor)>,
    /// A tensor of the output's shape added to the result.
    pub residual: Option<&'a GpuTensor>,
    /// Clamp negative results to zero.
    pub relu: bool,
}

/// `shaders/conv1x1.wgsl`: 1x1 convolution with stride and epilogue, as a tiled GEMM.
pub struct Conv1x1 {
    pipeline: Pipeline,
}

impl Conv1x1 {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "conv1x1.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `y = epilogue(W x)` with `x` `[N, Cin, H, W]`, `weight` `[Cout, Cin]` and `y`
    /// `[N, Cout, (H-1)/s+1, (W-1)/s+1]`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        epilogue: Conv1x1Epilogue<'_>,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv1x1";
        let xs = x.shape4(OP, "input")?;
        let cout = match weight.dims() {
            [cout, cin] if *cin == xs.c => *cout,
            d => {
                return Err(crate::Error::shape(
                    OP,
                    "weight",
                    format!("[Cout, {}]", xs.c),
                    format!("{d:?}"),
                ));
            }
        };
        let ys = xs.strided(cout, stride);
        let mut flags = 0;
        if let Some((scale, bias)) = epilogue.affine {
            expect_dims(OP, "affine scale", scale, &[cout])?;
            expect_dims(OP, "affine bias", bias, &[cout])?;
            flags |= FLAG_AFFINE;
        }
        if let Some(r) = epilogue.residual {
            expect_dims(OP, "residual", r, &ys.dims())?;
            flags |= FLAG_RESIDUAL;
        }
        if epilogue.relu {
            flags |= FLAG_RELU;
        }
        let params = Conv1x1Params::new(OP, xs, cout, stride, flags)?;
        expect_dims(OP, "output", y, &ys.dims())?;
        let device = ctx.device();
        let none = ctx.kernels().placeholder(device);
        let (scale, bias) = epilogue
            .affine
            .map_or((none, none), |(s, b)| (s.buffer(), b.buffer()));
        let residual = epilogue.residual.map_or(none, |r| r.buffer());
        let groups = workgroups(
            OP,
            device,
            [ys.plane().div_ceil(TILE), cout.div_ceil(TILE), xs.n],
        )?;
        Ok(self.pipeline.prepare(
            device,
            &params,
            &[
                (1, x.buffer()),
                (2, weight.buffer()),
                (3, scale),
                (4, bias),
                (5, residual),
                (6, y.buffer()),
            ],
            groups,
        ))
    }
}

/// `shaders/conv1x1_backward_input.wgsl`: `dx = W^T dy`, zero where the stride skipped.
pub struct Conv1x1BackwardInput {
    pipeline: Pipeline,
}

impl Conv1x1BackwardInput {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "conv1x1_backward_input.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing the input gradient `dx` (`[N, Cin, H, W]`, the forward input's shape) from `dy`
    /// (`[N, Cout, Ho, Wo]`) and `weight` (`[Cout, Cin]`).
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dy: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        dx: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv1x1_backward_input";
        let xs = dx.shape4(OP, "input gradient")?;
        let cout = match weight.dims() {
            [cout, cin] if *cin == xs.c => *cout,
            d => {
                return Err(crate::Error::shape(
                    OP,
                    "weight",
                    format!("[Cout, {}]", xs.c),
                    format!("{d:?}"),
                ));
            }
        };
        let params = Conv1x1Params::new(OP, xs, cout, stride, 0)?;
        expect_dims(OP, "output gradient", dy, &xs.strided(cout, stride).dims())?;
        let groups = workgroups(
            OP,
            ctx.device(),
            [xs.plane().div_ceil(TILE), xs.c.div_ceil(TILE), xs.n],
        )?;
        Ok(self.pipeline.prepare(
            ctx.device(),
            &params,
            &[(1, dy.buffer()), (2, weight.buffer()), (3, dx.buffer())],
            groups,
        ))
    }
}

/// `shaders/conv1x1_backward_weight.wgsl`: `dW = sum over the batch of dy x^T`.
pub struct Conv1x1BackwardWeight {
    pipeline: Pipeline,
    reduce: Pipeline,
}

impl Conv1x1BackwardWeight {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "conv1x1_backward_weight.wgsl", "main"),
            reduce: Pipeline::new(device, "conv1x1_backward_weight.wgsl", "reduce_splits"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing the weight gradient `dw` (`[Cout, Cin]`) from `dy` (`[N, Cout, Ho, Wo]`) and the
    /// forward input `x` (`[N, Cin, H, W]`).
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dy: &GpuTensor,
        x: &GpuTensor,
        stride: usize,
        dw: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv1x1_backward_weight";
        let xs = x.shape4(OP, "input")?;
        let cout = match dw.dims() {
            [cout, cin] if *cin == xs.c => *cout,
            d => {
                return Err(crate::Error::shape(
                    OP,
                    "weight gradient",
                    format!("[Cout, {}]", xs.c),
                    format!("{d:?}"),
                ));
            }
        };
        let mut params = Conv1x1Params::new(OP, xs, cout, stride, 0)?;
        let ys = xs.strided(cout, stride);
        expect_dims(OP, "output gradient", dy, &ys.dims())?;
        if (xs.n * ys.plane()) > u32::MAX as usize {
            return Err(crate::Error::DeviceLimit {
                op: OP,
                what: "batch positions (N * Ho * Wo)",
                needed: (xs.n * ys.plane()) as u64,
                limit: u64::from(u32::MAX),
            });
        }
        // Split K = N * Ho * Wo into at most MAX_SPLITS chunks of at least MIN_CHUNK terms, so
        // that a small weight over a large batch still spreads over many workgroups.
        const MAX_SPLITS: usize = 64;
        const MIN_CHUNK: usize = 256;
        let total = xs.n * ys.plane();
        let k_chunk = total
            .div_ceil(MAX_SPLITS)
            .max(MIN_CHUNK)
            .next_multiple_of(TILE_K);
        let splits = total.div_ceil(k_chunk).max(1);
        params._pad[0] = u32_of(OP, "terms per chunk", k_chunk)?;
        params._pad[1] = u32_of(OP, "chunks", splits)?;
        let device = ctx.device();
        let part = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activeshift conv1x1_backward_weight chunks"),
            size: (splits * cout * xs.c * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let groups = workgroups(
            OP,
            device,
            [xs.c.div_ceil(TILE), cout.div_ceil(TILE), splits],
        )?;
        let partial = self.pipeline.prepare(
            device,
            &params,
            &[(1, dy.buffer()), (2, x.buffer()), (4, &part)],
            groups,
        );
        let limit = device.limits().max_compute_workgroups_per_dimension.max(1) as usize;
        let blocks = (cout * xs.c).div_ceil(256);
        let grid = if blocks <= limit {
            [blocks, 1, 1]
        } else {
            [limit, blocks.div_ceil(limit), 1]
        };
        let reduce = self.reduce.prepare(
            device,
            &params,
            &[(3, dw.buffer()), (4, &part)],
            workgroups(OP, device, grid)?,
        );
        Ok(partial.then(reduce))
    }
}
