//! The Active Shift Layer kernels: forward, input gradient, shift gradient, normalization.

use super::{Dispatch, Pipeline, expect_dims, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Invocations per workgroup of the ASL kernels (`WG_SIZE` in their WGSL).
const WG_SIZE: usize = 256;
/// Output positions reduced by one workgroup of `partial_sums` (`CHUNK` in
/// `asl_backward_shift.wgsl`).
pub const ASL_SHIFT_CHUNK: usize = 1024;

/// Mirrors `struct AslParams` in `shaders/asl_*.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct AslParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    stride: u32,
    chunks: u32,
}

impl AslParams {
    fn new(op: &'static str, xs: Shape4, stride: usize, chunks: usize) -> Result<Self> {
        check_stride(op, stride)?;
        check_nonempty(op, "input", xs)?;
        let os = xs.strided(xs.c, stride);
        Ok(Self {
            n: u32_of(op, "batch size", xs.n)?,
            c: u32_of(op, "channels", xs.c)?,
            h: u32_of(op, "height", xs.h)?,
            w: u32_of(op, "width", xs.w)?,
            ho: u32_of(op, "output height", os.h)?,
            wo: u32_of(op, "output width", os.w)?,
            stride: u32_of(op, "stride", stride)?,
            chunks: u32_of(op, "chunks", chunks)?,
        })
    }
}

/// `shaders/asl_forward.wgsl`: the shifted (and strided) copy of the input; for stride 1 and
/// a width divisible by 4, `shaders/asl_forward_vec4.wgsl` (4 pixels per invocation).
pub struct AslForward {
    pipeline: Pipeline,
    vec4: Pipeline,
}

impl AslForward {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "asl_forward.wgsl", "main"),
            vec4: Pipeline::new(device, "asl_forward_vec4.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `out = ASL(x; shift, stride)`. `x` is `[N, C, H, W]`, `shift` is `[2, C]` (all
    /// `xpos`, then all `ypos`), `out` must be `[N, C, (H-1)/s+1, (W-1)/s+1]`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        out: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "asl_forward";
        let xs = x.shape4(OP, "input")?;
        let params = AslParams::new(OP, xs, stride, 0)?;
        expect_dims(OP, "shift", shift, &[2, xs.c])?;
        let os = xs.strided(xs.c, stride);
        expect_dims(OP, "output", out, &os.dims())?;
        if stride == 1 && xs.w.is_multiple_of(4) {
            let groups = workgroups(
                OP,
                ctx.device(),
                [(os.plane() / 4).div_ceil(64), xs.c, xs.n],
            )?;
            return Ok(self.vec4.prepare(
                ctx.device(),
                &params,
                &[(1, x.buffer()), (2, shift.buffer()), (3, out.buffer())],
                groups,
            ));
        }
        let groups = workgroups(OP, ctx.device(), [os.plane().div_ceil(WG_SIZE), xs.c, xs.n])?;
        Ok(self.pipeline.prepare(
            ctx.device(),
            &params,
            &[(1, x.buffer()), (2, shift.buffer()), (3, out.buffer())],
            groups,
        ))
    }
}

/// `shaders/asl_backward_input.wgsl`: gradient with respect to the input, as a gather.
pub struct AslBackwardInput {
    pipeline: Pipeline,
}

impl AslBackwardInput {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "asl_backward_input.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `dx = ASL^T(dout)`. `dx` is `[N, C, H, W]` (the forward input's shape), `dout`
    /// the forward output's shape, `shift` `[2, C]`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        dout: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        dx: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "asl_backward_input";
        let xs = dx.shape4(OP, "input gradient")?;
        let params = AslParams::new(OP, xs, stride, 0)?;
        expect_dims(OP, "shift", shift, &[2, xs.c])?;
        expect_dims(
            OP,
            "output gradient",
            dout,
            &xs.strided(xs.c, stride).dims(),
        )?;
        let groups = workgroups(OP, ctx.device(), [xs.plane().div_ceil(WG_SIZE), xs.c, xs.n])?;
        Ok(self.pipeline.prepare(
            ctx.device(),
            &params,
            &[(1, dout.buffer()), (2, shift.buffer()), (3, dx.buffer())],
            groups,
        ))
    }
}

/// `shaders/asl_backward_shift.wgsl`: gradient with respect to the shifts, by a fixed-order
/// two-pass reduction (bitwise reproducible).
pub struct AslBackwardShift {
    partial_sums: Pipeline,
    finish: Pipeline,
}

impl AslBackwardShift {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            partial_sums: Pipeline::new(device, "asl_backward_shift.wgsl", "partial_sums"),
            finish: Pipeline::new(device, "asl_backward_shift.wgsl", "finish"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `grad = d loss / d shift` (`[2, C]`: all `dxpos`, then all `dypos`), summed over
    /// the batch and every output position, from the forward input `x` and `dout`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        dout: &GpuTensor,
        shift: &GpuTensor,
        stride: usize,
        grad: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "asl_backward_shift";
        let xs = x.shape4(OP, "input")?;
        check_stride(OP, stride)?;
        let os = xs.strided(xs.c, stride);
        let chunks = (xs.n * os.plane()).div_ceil(ASL_SHIFT_CHUNK);
        let params = AslParams::new(OP, xs, stride, chunks)?;
        expect_dims(OP, "shift", shift, &[2, xs.c])?;
        expect_dims(OP, "output gradient", dout, &os.dims())?;
        expect_dims(OP, "shift gradient", grad, &[2, xs.c])?;
        let partials = GpuTensor::zeros(ctx, &[xs.c, chunks, 2])?;
        let device = ctx.device();
        let partial_sums = self.partial_sums.prepare(
            device,
            &params,
            &[
                (1, x.buffer()),
                (2, dout.buffer()),
                (3, shift.buffer()),
                (4, partials.buffer()),
            ],
            workgroups(OP, device, [chunks, xs.c, 1])?,
        );
        let finish = self.finish.prepare(
            device,
            &params,
            &[(4, partials.buffer()), (5, grad.buffer())],
            workgroups(OP, device, [xs.c, 1, 1])?,
        );
        Ok(partial_sums.then(finish))
    }
}

/// Mirrors `struct NormalizeParams` in `shaders/shift_grad_normalize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct NormalizeParams {
    c: u32,
    _pad: [u32; 3],
}

/// `shaders/shift_grad_normalize.wgsl`: scales each channel's shift gradient to unit norm.
pub struct ShiftGradNormalize {
    pipeline: Pipeline,
}

impl ShiftGradNormalize {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            pipeline: Pipeline::new(device, "shift_grad_normalize.wgsl", "main"),
        }
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing the in-place normalization of `grad` (`[2, C]`).
    pub fn prepare(&self, ctx: &GpuContext, grad: &GpuTensor) -> Result<Dispatch> {
        const OP: &str = "shift_grad_normalize";
        let c = match grad.dims() {
            [2, c] => *c,
            _ => {
                return Err(crate::Error::shape(
                    OP,
                    "shift gradient",
                    "[2, C]",
                    format!("{:?}", grad.dims()),
                ));
            }
        };
        let params = NormalizeParams {
            c: u32_of(OP, "channels", c)?,
            _pad: [0; 3],
        };
        let groups = workgroups(OP, ctx.device(), [c.div_ceil(WG_SIZE), 1, 1])?;
        Ok(self
            .pipeline
            .prepare(ctx.device(), &params, &[(1, grad.buffer())], groups))
    }
}
