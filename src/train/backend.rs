//! The operations a training step needs, behind one trait, so that the same training code
//! ([`Trainer::forward_backward_on`](super::Trainer::forward_backward_on)) runs on the CPU
//! ([`CpuBackend`]: rayon + ndarray GEMMs) and on the GPU ([`GpuBackend`]: the WGSL kernels).
//!
//! Tensors are NCHW `f32`. Each operation returns fresh tensors; the parameters are uploaded
//! at the start of a step and the gradients and statistics downloaded at its end, so the
//! optimiser, the running statistics and the checkpoints stay in one place on the host.

use super::cpu_tensor::{CpuTensor, uninit};
use crate::cpu::fast;
use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::Shape4;

/// A device that runs the layers of a training step.
pub trait Backend {
    /// A tensor living on the device.
    type Tensor;

    /// A short description for logs ("CPU, 2 threads", the adapter name).
    fn describe(&self) -> String;
    /// Copy host data of shape `dims` to the device.
    fn upload(&mut self, dims: &[usize], data: &[f32]) -> Result<Self::Tensor>;
    /// Copy tensors back to the host (in one round trip where the device allows).
    fn download(&mut self, tensors: &[&Self::Tensor]) -> Result<Vec<Vec<f32>>>;

    /// 3x3 convolution, pad 1, stride `s`, no bias: `w` is `[cout, xs.c, 3, 3]`.
    fn conv3x3(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        w: &Self::Tensor,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Weight gradient of [`Backend::conv3x3`].
    fn conv3x3_backward_weight(
        &mut self,
        dy: &Self::Tensor,
        x: &Self::Tensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// 1x1 convolution with stride `s` (`w`: `[cout, xs.c]`), plus `residual` (of the output's
    /// shape) when given.
    #[allow(clippy::too_many_arguments)]
    fn conv1x1(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        w: &Self::Tensor,
        cout: usize,
        s: usize,
        residual: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor>;
    /// Weight gradient of [`Backend::conv1x1`] (summed over the batch).
    fn conv1x1_backward_weight(
        &mut self,
        dy: &Self::Tensor,
        x: &Self::Tensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Input gradient of [`Backend::conv1x1`] (shape `xs`; zero where the stride skipped).
    fn conv1x1_backward_input(
        &mut self,
        dy: &Self::Tensor,
        xs: Shape4,
        w: &Self::Tensor,
        cout: usize,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// BatchNorm with batch statistics, then ReLU: `(y, stats)` with `stats` `[3, C]` (mean,
    /// biased variance, `1 / sqrt(var + eps)`).
    fn bn_relu_train(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// Backward of [`Backend::bn_relu_train`]: `(dx, dparams)` with `dparams` `[2, C]`: dgamma,
    /// then dbeta.
    #[allow(clippy::too_many_arguments)]
    fn bn_relu_backward(
        &mut self,
        dy: &Self::Tensor,
        x: &Self::Tensor,
        y: &Self::Tensor,
        xs: Shape4,
        gamma: &Self::Tensor,
        stats: &Self::Tensor,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// The Active Shift Layer (`shift`: `[2, C]`, all x then all y) with stride `s`.
    fn shift(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        shift: &Self::Tensor,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Backward of [`Backend::shift`]: `(dx, dshift)`, the shift gradient summed over the batch.
    fn shift_backward(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        dout: &Self::Tensor,
        shift: &Self::Tensor,
        s: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// 3x3 depthwise convolution (pad 1, stride `s`, `w` `[C, 1, 3, 3]`): the baseline block.
    fn depthwise3x3(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        w: &Self::Tensor,
        s: usize,
    ) -> Result<Self::Tensor>;
    /// Backward of [`Backend::depthwise3x3`]: `(dx, dw)`, the weight gradient summed over the
    /// batch.
    fn depthwise3x3_backward(
        &mut self,
        x: &Self::Tensor,
        xs: Shape4,
        dy: &Self::Tensor,
        w: &Self::Tensor,
        s: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// `a += b`.
    fn add_assign(&mut self, a: &mut Self::Tensor, b: &Self::Tensor) -> Result<()>;
    /// Global average pooling: `[N, C]`.
    fn avg_pool(&mut self, x: &Self::Tensor, xs: Shape4) -> Result<Self::Tensor>;
    /// Backward of [`Backend::avg_pool`]: shape `xs`.
    fn avg_pool_backward(&mut self, dy: &Self::Tensor, xs: Shape4) -> Result<Self::Tensor>;
    /// Fully connected layer: `[n, k]` logits from `[n, c]` features, `w` `[k, c]`, `b` `[k]`.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &mut self,
        x: &Self::Tensor,
        n: usize,
        c: usize,
        w: &Self::Tensor,
        b: &Self::Tensor,
        k: usize,
    ) -> Result<Self::Tensor>;
    /// Backward of [`Backend::linear`] without the bias: `(dx, dw)`.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &mut self,
        dy: &Self::Tensor,
        x: &Self::Tensor,
        w: &Self::Tensor,
        n: usize,
        c: usize,
        k: usize,
    ) -> Result<(Self::Tensor, Self::Tensor)>;
    /// Softmax cross-entropy of `[n, k]` logits against `labels` (each `< k`): the gradient of
    /// the mean loss, the bias gradient (its sum over the batch) and `[n, 2]` per-image
    /// (loss, 1 if the top-1 class is right).
    fn softmax_cross_entropy(
        &mut self,
        logits: &Self::Tensor,
        labels: &[u8],
        k: usize,
    ) -> Result<(Self::Tensor, Self::Tensor, Self::Tensor)>;
}

fn check_labels(labels: &[u8], k: usize) -> Result<()> {
    match labels.iter().find(|&&l| usize::from(l) >= k) {
        Some(l) => Err(Error::invalid(
            "softmax_cross_entropy",
            format!("label {l} is not below the {k} classes"),
        )),
        None => Ok(()),
    }
}

/// The CPU: the fast CPU op set (`crate::cpu::fast`), multi-threaded with rayon, GEMMs through
/// ndarray.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    type Tensor = CpuTensor;

    fn describe(&self) -> String {
        format!("CPU, {} threads", rayon::current_num_threads())
    }

    fn upload(&mut self, _dims: &[usize], data: &[f32]) -> Result<CpuTensor> {
        Ok(CpuTensor::from(data))
    }

    fn download(&mut self, tensors: &[&CpuTensor]) -> Result<Vec<Vec<f32>>> {
        Ok(tensors.iter().map(|t| t.to_vec()).collect())
    }

    fn conv3x3(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        w: &CpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        let mut y = uninit(xs.strided(cout, s).len());
        fast::conv3x3(x, xs, w, cout, s, &mut y, &mut Vec::new());
        Ok(y.into())
    }

    fn conv3x3_backward_weight(
        &mut self,
        dy: &CpuTensor,
        x: &CpuTensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        Ok(fast::conv3x3_backward_weight(dy, x, xs, cout, s).into())
    }

    fn conv1x1(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        w: &CpuTensor,
        cout: usize,
        s: usize,
        residual: Option<&CpuTensor>,
    ) -> Result<CpuTensor> {
        let mut y = uninit(xs.strided(cout, s).len());
        let ep = crate::cpu::Epilogue {
            residual: residual.map(|r| &r[..]),
            ..Default::default()
        };
        fast::conv1x1(x, xs, w, cout, s, &ep, &mut y, &mut Vec::new());
        Ok(y.into())
    }

    fn conv1x1_backward_weight(
        &mut self,
        dy: &CpuTensor,
        x: &CpuTensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        Ok(fast::conv1x1_backward_weight(dy, x, xs, cout, s).into())
    }

    fn conv1x1_backward_input(
        &mut self,
        dy: &CpuTensor,
        xs: Shape4,
        w: &CpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<CpuTensor> {
        let mut dx = fast::BufferPool::zeros(xs.len());
        fast::conv1x1_backward_input(dy, xs, w, cout, s, &mut dx);
        Ok(dx.into())
    }

    fn bn_relu_train(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        gamma: &CpuTensor,
        beta: &CpuTensor,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let (y, stats) = fast::bn_relu_train(x, xs, gamma, beta);
        Ok((y.into(), stats.into()))
    }

    fn bn_relu_backward(
        &mut self,
        dy: &CpuTensor,
        x: &CpuTensor,
        y: &CpuTensor,
        xs: Shape4,
        gamma: &CpuTensor,
        stats: &CpuTensor,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let (dx, mut dparams, dbeta) = fast::bn_relu_backward(dy, x, y, xs, gamma, stats);
        dparams.extend(dbeta);
        Ok((dx.into(), dparams.into()))
    }

    fn shift(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        shift: &CpuTensor,
        s: usize,
    ) -> Result<CpuTensor> {
        crate::cpu::check_len("shift", "shift", shift, 2 * xs.c, format!("[2, {}]", xs.c))?;
        let mut y = uninit(xs.strided(xs.c, s).len());
        fast::asl_forward(x, xs, shift, s, &mut y);
        Ok(y.into())
    }

    fn shift_backward(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        dout: &CpuTensor,
        shift: &CpuTensor,
        s: usize,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let (dx, dshift) = fast::shift_backward(x, xs, dout, shift, s)?;
        Ok((dx.into(), dshift.into()))
    }

    fn depthwise3x3(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        w: &CpuTensor,
        s: usize,
    ) -> Result<CpuTensor> {
        crate::cpu::check_len(
            "depthwise3x3",
            "weight",
            w,
            9 * xs.c,
            format!("[{}, 1, 3, 3]", xs.c),
        )?;
        let mut y = uninit(xs.strided(xs.c, s).len());
        fast::depthwise3x3(x, xs, w, s, &mut y);
        Ok(y.into())
    }

    fn depthwise3x3_backward(
        &mut self,
        x: &CpuTensor,
        xs: Shape4,
        dy: &CpuTensor,
        w: &CpuTensor,
        s: usize,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let (dx, dw) = fast::depthwise3x3_backward(x, xs, dy, w, s);
        Ok((dx.into(), dw.into()))
    }

    fn add_assign(&mut self, a: &mut CpuTensor, b: &CpuTensor) -> Result<()> {
        a.iter_mut().zip(b.iter()).for_each(|(a, b)| *a += b);
        Ok(())
    }

    fn avg_pool(&mut self, x: &CpuTensor, xs: Shape4) -> Result<CpuTensor> {
        Ok(x.chunks(xs.plane())
            .map(|p| p.iter().sum::<f32>() / xs.plane() as f32)
            .collect::<Vec<f32>>()
            .into())
    }

    fn avg_pool_backward(&mut self, dy: &CpuTensor, xs: Shape4) -> Result<CpuTensor> {
        let plane = xs.plane() as f32;
        let mut dx = uninit(xs.len());
        for (d, g) in dx.chunks_mut(xs.plane()).zip(dy.iter()) {
            d.fill(g / plane);
        }
        Ok(dx.into())
    }

    fn linear(
        &mut self,
        x: &CpuTensor,
        n: usize,
        c: usize,
        w: &CpuTensor,
        b: &CpuTensor,
        k: usize,
    ) -> Result<CpuTensor> {
        let mut logits = vec![0.0; n * k];
        for i in 0..n {
            for cls in 0..k {
                let mut acc = b[cls];
                for ch in 0..c {
                    acc += w[cls * c + ch] * x[i * c + ch];
                }
                logits[i * k + cls] = acc;
            }
        }
        Ok(logits.into())
    }

    fn linear_backward(
        &mut self,
        dy: &CpuTensor,
        x: &CpuTensor,
        w: &CpuTensor,
        n: usize,
        c: usize,
        k: usize,
    ) -> Result<(CpuTensor, CpuTensor)> {
        let mut dw = vec![0.0; k * c];
        let mut dx = vec![0.0; n * c];
        for i in 0..n {
            for cls in 0..k {
                let g = dy[i * k + cls];
                for ch in 0..c {
                    dw[cls * c + ch] += g * x[i * c + ch];
                    dx[i * c + ch] += g * w[cls * c + ch];
                }
            }
        }
        Ok((dx.into(), dw.into()))
    }

    fn softmax_cross_entropy(
        &mut self,
        logits: &CpuTensor,
        labels: &[u8],
        k: usize,
    ) -> Result<(CpuTensor, CpuTensor, CpuTensor)> {
        check_labels(labels, k)?;
        let n = labels.len();
        let mut d = vec![0.0; n * k];
        let mut per_image = vec![0.0; 2 * n];
        for i in 0..n {
            let row = &logits[i * k..][..k];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            let label = usize::from(labels[i]);
            let argmax = (0..k)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            per_image[2 * i] = sum.ln() + max - row[label];
            per_image[2 * i + 1] = if argmax == label { 1.0 } else { 0.0 };
            for cls in 0..k {
                let p = (row[cls] - max).exp() / sum;
                d[i * k + cls] = (p - if cls == label { 1.0 } else { 0.0 }) / n as f32;
            }
        }
        let db: Vec<f32> = (0..k)
            .map(|cls| (0..n).map(|i| d[i * k + cls]).sum())
            .collect();
        Ok((d.into(), db.into(), per_image.into()))
    }
}

/// The GPU (native only: a training step reads its results back synchronously): every layer a
/// WGSL kernel of [`crate::gpu::kernels`]. Launches are recorded as they come and submitted
/// together, in order, in one command buffer when results are downloaded (or every
/// [`GPU_BATCH_LAUNCHES`] launches): a step costs a few submissions instead of one per layer.
#[cfg(not(target_arch = "wasm32"))]
pub struct GpuBackend {
    ctx: GpuContext,
    /// Launches recorded since the last submission.
    pending: std::cell::RefCell<Vec<crate::gpu::kernels::Dispatch>>,
}

/// A clone shares the device, not the launches still waiting in the original.
#[cfg(not(target_arch = "wasm32"))]
impl Clone for GpuBackend {
    fn clone(&self) -> Self {
        Self::new(self.ctx.clone())
    }
}

/// Most launches [`GpuBackend`] holds before submitting them.
#[cfg(not(target_arch = "wasm32"))]
pub const GPU_BATCH_LAUNCHES: usize = 64;

#[cfg(not(target_arch = "wasm32"))]
impl GpuBackend {
    /// Train on the device of `ctx`.
    pub fn new(ctx: GpuContext) -> Self {
        Self {
            ctx,
            pending: Default::default(),
        }
    }

    /// The context the kernels run on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    fn zeros(&self, dims: &[usize]) -> Result<GpuTensor> {
        GpuTensor::zeros(&self.ctx, dims)
    }

    /// Queue `dispatch` behind the launches recorded before it. Every tensor a launch writes
    /// is either fresh or written only by launches, so deferring them changes no result.
    fn run(&self, dispatch: crate::gpu::kernels::Dispatch) -> Result<()> {
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(dispatch);
            pending.len() >= GPU_BATCH_LAUNCHES
        };
        if full { self.flush() } else { Ok(()) }
    }

    /// Submit the recorded launches, in order, in one command buffer.
    fn flush(&self) -> Result<()> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if pending.is_empty() {
            return Ok(());
        }
        self.ctx.submit(|enc| {
            pending.iter().for_each(|d| d.record(enc));
            Ok(())
        })?;
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Backend for GpuBackend {
    type Tensor = GpuTensor;

    fn describe(&self) -> String {
        self.ctx.describe()
    }

    fn upload(&mut self, dims: &[usize], data: &[f32]) -> Result<GpuTensor> {
        GpuTensor::from_slice(&self.ctx, dims, data)
    }

    fn download(&mut self, tensors: &[&GpuTensor]) -> Result<Vec<Vec<f32>>> {
        self.flush()?;
        crate::gpu::read_many_blocking(&self.ctx, tensors)
    }

    fn conv3x3(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        w: &GpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let w = w.reshape(&[cout, xs.c, 3, 3])?;
        let y = self.zeros(&xs.strided(cout, s).dims())?;
        self.run(
            self.ctx
                .kernels()
                .conv3x3()
                .prepare(&self.ctx, &x, &w, s, &y)?,
        )?;
        Ok(y)
    }

    fn conv3x3_backward_weight(
        &mut self,
        dy: &GpuTensor,
        x: &GpuTensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let dy = dy.reshape(&xs.strided(cout, s).dims())?;
        let dw = self.zeros(&[cout, xs.c, 3, 3])?;
        let k = self.ctx.kernels().conv3x3_backward_weight();
        self.run(k.prepare(&self.ctx, &dy, &x, s, &dw)?)?;
        Ok(dw)
    }

    fn conv1x1(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        w: &GpuTensor,
        cout: usize,
        s: usize,
        residual: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let w = w.reshape(&[cout, xs.c])?;
        let ys = xs.strided(cout, s);
        let residual = residual.map(|r| r.reshape(&ys.dims())).transpose()?;
        let y = self.zeros(&ys.dims())?;
        let epilogue = crate::gpu::kernels::Conv1x1Epilogue {
            residual: residual.as_ref(),
            ..Default::default()
        };
        let k = self.ctx.kernels().conv1x1();
        self.run(k.prepare(&self.ctx, &x, &w, s, epilogue, &y)?)?;
        Ok(y)
    }

    fn conv1x1_backward_weight(
        &mut self,
        dy: &GpuTensor,
        x: &GpuTensor,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let dy = dy.reshape(&xs.strided(cout, s).dims())?;
        let dw = self.zeros(&[cout, xs.c])?;
        let k = self.ctx.kernels().conv1x1_backward_weight();
        self.run(k.prepare(&self.ctx, &dy, &x, s, &dw)?)?;
        Ok(dw)
    }

    fn conv1x1_backward_input(
        &mut self,
        dy: &GpuTensor,
        xs: Shape4,
        w: &GpuTensor,
        cout: usize,
        s: usize,
    ) -> Result<GpuTensor> {
        let dy = dy.reshape(&xs.strided(cout, s).dims())?;
        let w = w.reshape(&[cout, xs.c])?;
        let dx = self.zeros(&xs.dims())?;
        let k = self.ctx.kernels().conv1x1_backward_input();
        self.run(k.prepare(&self.ctx, &dy, &w, s, &dx)?)?;
        Ok(dx)
    }

    fn bn_relu_train(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        gamma: &GpuTensor,
        beta: &GpuTensor,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let x = x.reshape(&xs.dims())?;
        let y = self.zeros(&xs.dims())?;
        let stats = self.zeros(&[3, xs.c])?;
        let k = self.ctx.kernels().batchnorm_train();
        self.run(k.prepare_forward(&self.ctx, &x, gamma, beta, &stats, &y)?)?;
        Ok((y, stats))
    }

    fn bn_relu_backward(
        &mut self,
        dy: &GpuTensor,
        x: &GpuTensor,
        y: &GpuTensor,
        xs: Shape4,
        gamma: &GpuTensor,
        stats: &GpuTensor,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let (x, y, dy) = (
            x.reshape(&xs.dims())?,
            y.reshape(&xs.dims())?,
            dy.reshape(&xs.dims())?,
        );
        let dparams = self.zeros(&[2, xs.c])?;
        let dx = self.zeros(&xs.dims())?;
        let k = self.ctx.kernels().batchnorm_train();
        self.run(k.prepare_backward(&self.ctx, &x, &y, gamma, stats, &dy, &dparams, &dx)?)?;
        Ok((dx, dparams))
    }

    fn shift(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        shift: &GpuTensor,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let out = self.zeros(&xs.strided(xs.c, s).dims())?;
        let k = self.ctx.kernels().asl_forward();
        self.run(k.prepare(&self.ctx, &x, shift, s, &out)?)?;
        Ok(out)
    }

    fn shift_backward(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        dout: &GpuTensor,
        shift: &GpuTensor,
        s: usize,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let x = x.reshape(&xs.dims())?;
        let dout = dout.reshape(&xs.strided(xs.c, s).dims())?;
        let dx = self.zeros(&xs.dims())?;
        let dshift = self.zeros(&[2, xs.c])?;
        let kernels = self.ctx.kernels();
        let input = kernels
            .asl_backward_input()
            .prepare(&self.ctx, &dout, shift, s, &dx)?;
        let grad = kernels
            .asl_backward_shift()
            .prepare(&self.ctx, &x, &dout, shift, s, &dshift)?;
        self.run(input.then(grad))?;
        Ok((dx, dshift))
    }

    fn depthwise3x3(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        w: &GpuTensor,
        s: usize,
    ) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let w = w.reshape(&[xs.c, 1, 3, 3])?;
        let y = self.zeros(&xs.strided(xs.c, s).dims())?;
        let k = self.ctx.kernels().depthwise3x3();
        self.run(k.prepare(&self.ctx, &x, &w, s, &y)?)?;
        Ok(y)
    }

    fn depthwise3x3_backward(
        &mut self,
        x: &GpuTensor,
        xs: Shape4,
        dy: &GpuTensor,
        w: &GpuTensor,
        s: usize,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let x = x.reshape(&xs.dims())?;
        let dy = dy.reshape(&xs.strided(xs.c, s).dims())?;
        let w = w.reshape(&[xs.c, 1, 3, 3])?;
        let dx = self.zeros(&xs.dims())?;
        let dw = self.zeros(&[xs.c, 1, 3, 3])?;
        let k = self.ctx.kernels().depthwise3x3_backward();
        self.run(k.prepare(&self.ctx, &x, &dy, &w, s, &dx, &dw)?)?;
        Ok((dx, dw))
    }

    fn add_assign(&mut self, a: &mut GpuTensor, b: &GpuTensor) -> Result<()> {
        let k = self.ctx.kernels().add();
        self.run(k.prepare(&self.ctx, b, a)?)
    }

    fn avg_pool(&mut self, x: &GpuTensor, xs: Shape4) -> Result<GpuTensor> {
        let x = x.reshape(&xs.dims())?;
        let y = self.zeros(&[xs.n, xs.c, 1, 1])?;
        let k = self.ctx.kernels().global_avg_pool();
        self.run(k.prepare(&self.ctx, &x, &y)?)?;
        y.reshape(&[xs.n, xs.c])
    }

    fn avg_pool_backward(&mut self, dy: &GpuTensor, xs: Shape4) -> Result<GpuTensor> {
        let dx = self.zeros(&xs.dims())?;
        let k = self.ctx.kernels().global_avg_pool_backward();
        self.run(k.prepare(&self.ctx, dy, &dx)?)?;
        Ok(dx)
    }

    fn linear(
        &mut self,
        x: &GpuTensor,
        n: usize,
        c: usize,
        w: &GpuTensor,
        b: &GpuTensor,
        k: usize,
    ) -> Result<GpuTensor> {
        // A 1x1 convolution of [n, c, 1, 1] with the bias as the epilogue's affine (scale 1).
        let ones = GpuTensor::filled(&self.ctx, &[k], 1.0)?;
        let x = x.reshape(&[n, c, 1, 1])?;
        let w = w.reshape(&[k, c])?;
        let y = self.zeros(&[n, k, 1, 1])?;
        let epilogue = crate::gpu::kernels::Conv1x1Epilogue {
            affine: Some((&ones, b)),
            ..Default::default()
        };
        let kernel = self.ctx.kernels().conv1x1();
        self.run(kernel.prepare(&self.ctx, &x, &w, 1, epilogue, &y)?)?;
        y.reshape(&[n, k])
    }

    fn linear_backward(
        &mut self,
        dy: &GpuTensor,
        x: &GpuTensor,
        w: &GpuTensor,
        n: usize,
        c: usize,
        k: usize,
    ) -> Result<(GpuTensor, GpuTensor)> {
        let xs = Shape4::new(n, c, 1, 1);
        let dw = self.conv1x1_backward_weight(dy, x, xs, k, 1)?;
        let dx = self.conv1x1_backward_input(dy, xs, w, k, 1)?;
        Ok((dx.reshape(&[n, c])?, dw))
    }

    fn softmax_cross_entropy(
        &mut self,
        logits: &GpuTensor,
        labels: &[u8],
        k: usize,
    ) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
        use wgpu::util::DeviceExt;
        check_labels(labels, k)?;
        let n = labels.len();
        let logits = logits.reshape(&[n, k])?;
        let wide: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        let label_buf = self
            .ctx
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("activeshift labels"),
                contents: bytemuck::cast_slice(&wide),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let d = self.zeros(&[n, k])?;
        let per_image = self.zeros(&[n, 2])?;
        let db = self.zeros(&[k])?;
        let kernel = self.ctx.kernels().softmax_cross_entropy();
        self.run(kernel.prepare(&self.ctx, &logits, &label_buf, &d, &per_image, &db)?)?;
        Ok((d, db, per_image))
    }
}
