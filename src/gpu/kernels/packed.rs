//! GEMMs over packed weights, shared by the register-tiled 1x1 GEMMs, the fused ASL GEMM and
//! the im2col 3x3: the weights packed into uniform slabs (or whole into a storage buffer) by
//! `conv1x1_pack.wgsl`, then one GEMM dispatch per slab.

use super::conv1x1::{EpilogueBinding, FLAG_INPUT_AFFINE};
use super::params::{GemmParams, PackParams};
use super::{Dispatch, LazyPipeline, Pipeline, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::Shape4;

/// Floats per uniform-buffer slab of packed weights (64 KiB, WebGPU's default
/// `max_uniform_buffer_binding_size`; `SLAB` in the WGSL).
pub(crate) const SLAB: usize = 16384;
/// Output channels per invocation of the packed GEMMs' `main` entry point; `main_wide` owns
/// twice as many and is used from [`WIDE_FROM`] output channels on where the policy asks for
/// it ([`KernelPolicy::wide_gemm`](crate::gpu::KernelPolicy::wide_gemm), off by default: it
/// compiles about 4 times as slowly).
const ROWS: usize = 32;
/// Output channels from which the packed GEMMs use their `main_wide` entry point.
pub(crate) const WIDE_FROM: usize = 64;
/// Invocations per workgroup of the packed GEMMs (`WG_SIZE` in their WGSL).
const GEMM_WG: usize = 32;
const FLAG_ACCUMULATE: u32 = 8;

/// How a `[Cout, Cin]` weight is cut into uniform slabs: blocks of `rows` output channels times
/// chunks of `kc` input channels.
#[derive(Clone, Copy, Debug)]
struct SlabLayout {
    kc: usize,
    nk: usize,
    rows: usize,
    blocks: usize,
}

impl SlabLayout {
    /// For invocations owning `per` output channels: every slab holds at least `per` rows of
    /// `kc` input channels.
    fn new(cout: usize, cin: usize, per: usize) -> Self {
        let kc = (cin.div_ceil(4) * 4).min(SLAB / per);
        let rows = ((SLAB / kc) / per * per).min(cout.div_ceil(per) * per);
        Self {
            kc,
            nk: cin.div_ceil(kc),
            rows,
            blocks: cout.div_ceil(rows),
        }
    }
    fn slabs(&self) -> usize {
        self.blocks * self.nk
    }
}

/// Fills the extra slab of a packed GEMM: given the packed buffer and the slab's offset in
/// floats, the dispatch that writes it.
pub(crate) type ExtraSlab<'a> = dyn Fn(&wgpu::Buffer, usize) -> Result<Dispatch> + 'a;

/// A GEMM over packed weights, ready to be turned into dispatches.
pub(crate) struct PackedGemm<'a> {
    pub(crate) op: &'static str,
    /// The `main` and `main_wide` pipelines of the GEMM's WGSL.
    pub(crate) gemm: &'a PackedPipelines,
    pub(crate) pack: &'a Pipeline,
    pub(crate) x: &'a GpuTensor,
    pub(crate) xs: Shape4,
    /// The GEMM's depth K: `Cin` for a 1x1 convolution, `9 * Cin` for the im2col 3x3.
    pub(crate) depth: usize,
    pub(crate) weight: &'a GpuTensor,
    /// `weight` holds the GEMM's weight transposed (`[depth, cout]`, read by the packing).
    pub(crate) transposed: bool,
    pub(crate) cout: usize,
    pub(crate) stride: usize,
    pub(crate) epilogue: &'a EpilogueBinding<'a>,
    pub(crate) y: &'a GpuTensor,
    /// Floats reserved after the slabs (bound at binding 7 as one more slab), and the dispatch
    /// that fills them, given the packed buffer and the offset in floats.
    pub(crate) extra: Option<&'a ExtraSlab<'a>>,
    /// One dispatch over weights packed whole into a storage buffer (the `_whole` entry
    /// points; only for GEMMs that have them, and without `extra`).
    pub(crate) whole: bool,
    /// The GEMM's WGSL reads the input affine (bindings 8 and 9: the 1x1 GEMMs).
    pub(crate) input_affine: bool,
}

impl PackedGemm<'_> {
    /// The packing dispatch followed by one GEMM dispatch per slab. Recorded whole, the weights
    /// are packed on every run, so the dispatches see the weight tensor's current values; the
    /// packing (and the extra slab's filling) is marked as setup, which a caller with fixed
    /// weights runs once (`GpuModel` does).
    pub(crate) fn build(&self, ctx: &GpuContext) -> Result<Dispatch> {
        let op = self.op;
        let device = ctx.device();
        let (xs, cout) = (self.xs, self.cout);
        let ys = xs.strided(cout, self.stride);
        let wide = ctx.policy().wide_gemm() && cout >= WIDE_FROM;
        let per = if wide { 2 * ROWS } else { ROWS };
        let depth = self.depth;
        if self.whole {
            return self.build_whole(ctx, wide, per);
        }
        let gemm = self.gemm.slabs(wide);
        let layout = SlabLayout::new(cout, depth, per);
        let slabs = layout.slabs();
        let len = slabs * SLAB;
        let total = len + if self.extra.is_some() { SLAB } else { 0 };
        let packed = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activeshift packed weights"),
            size: (total * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        });
        ctx.count_buffer(0);
        let mut dispatch =
            self.pack_dispatch(ctx, &packed, layout.rows, layout.kc, layout.nk, slabs)?;
        if let Some(extra) = self.extra {
            dispatch = dispatch.then(extra(&packed, len)?.setup());
        }
        let base = self.base_params(layout.kc)?;
        // Invocations per block of output channels: one per 4 output pixels.
        let pixel_groups = ys.plane().div_ceil(4);
        let slab_binding = |s: usize| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &packed,
                offset: (s * SLAB * 4) as u64,
                size: std::num::NonZeroU64::new((SLAB * 4) as u64),
            })
        };
        let ep = self.epilogue;
        // Chunks of input channels in order (each later chunk adds to y), blocks of output
        // channels within a chunk.
        for kb in 0..layout.nk {
            let last = kb + 1 == layout.nk;
            let k0 = kb * layout.kc;
            let k1 = (k0 + layout.kc).min(depth);
            for rb in 0..layout.blocks {
                let row0 = rb * layout.rows;
                let rows = layout.rows.min(cout - row0);
                let mut params = base;
                params.row0 = u32_of(op, "output channels", row0)?;
                params.k0 = u32_of(op, "input channels", k0)?;
                params.k1 = u32_of(op, "input channels", k1)?;
                // The epilogue on the last K chunk; the input affine (it transforms what every
                // chunk reads) on all of them.
                params.flags = if kb > 0 { FLAG_ACCUMULATE } else { 0 }
                    | if last {
                        ep.flags
                    } else {
                        ep.flags & FLAG_INPUT_AFFINE
                    };
                params.nrows = u32_of(op, "output channels", rows)?;
                // One invocation per (pixel group, block of `per` output channels) of an image.
                let lanes = pixel_groups * rows.div_ceil(per);
                let groups = workgroups(op, device, [lanes.div_ceil(GEMM_WG), 1, xs.n])?;
                let mut res = self.bindings((2, slab_binding(rb * layout.nk + kb)));
                if self.extra.is_some() {
                    res.push((7, slab_binding(slabs)));
                }
                dispatch = dispatch.then(gemm.prepare_bindings(device, &params, &res, groups));
            }
        }
        Ok(dispatch)
    }

    /// The packing dispatch (marked as setup) of the weight into `packed`: `slabs` slabs of
    /// `rows` output channels times `kc` input channels, `nk` chunks along the input channels.
    fn pack_dispatch(
        &self,
        ctx: &GpuContext,
        packed: &wgpu::Buffer,
        rows: usize,
        kc: usize,
        nk: usize,
        slabs: usize,
    ) -> Result<Dispatch> {
        let (op, device) = (self.op, ctx.device());
        let len = slabs * rows * kc;
        let params = PackParams {
            cout: u32_of(op, "output channels", self.cout)?,
            cin: u32_of(op, "input channels", self.depth)?,
            kc: u32_of(op, "input channels", kc)?,
            rows: u32_of(op, "output channels", rows)?,
            nk: u32_of(op, "input channels", nk)?,
            len: u32_of(op, "packed weights", len)?,
            transposed: u32::from(self.transposed),
            ..Default::default()
        };
        let groups = len.div_ceil(256);
        let gx = groups.min(32768);
        let groups = workgroups(op, device, [gx, groups.div_ceil(gx), 1])?;
        Ok(self
            .pack
            .prepare(
                device,
                &params,
                &[(1, self.weight.buffer()), (2, packed)],
                groups,
            )
            .setup())
    }

    /// The GEMM's parameters for packed rows of `kc` floats, no chunk or block chosen yet.
    fn base_params(&self, kc: usize) -> Result<GemmParams> {
        let op = self.op;
        let (xs, ys) = (self.xs, self.xs.strided(self.cout, self.stride));
        Ok(GemmParams {
            n: u32_of(op, "batch size", xs.n)?,
            cin: u32_of(op, "input channels", xs.c)?,
            cout: u32_of(op, "output channels", self.cout)?,
            h: u32_of(op, "height", xs.h)?,
            w: u32_of(op, "width", xs.w)?,
            ho: u32_of(op, "output height", ys.h)?,
            wo: u32_of(op, "output width", ys.w)?,
            stride: u32_of(op, "stride", self.stride)?,
            flags: 0,
            row0: 0,
            kc: u32_of(op, "input channels", kc)?,
            k0: 0,
            k1: 0,
            nrows: 0,
            ..Default::default()
        })
    }

    /// The bindings every packed GEMM dispatch has: input, epilogue, output, the input affine
    /// where the WGSL reads it, and `weights` (the slab or the whole packed matrix).
    fn bindings<'s>(
        &'s self,
        weights: (u32, wgpu::BindingResource<'s>),
    ) -> Vec<(u32, wgpu::BindingResource<'s>)> {
        let ep = self.epilogue;
        let mut res = vec![
            (1, self.x.buffer().as_entire_binding()),
            weights,
            (3, ep.scale.as_entire_binding()),
            (4, ep.bias.as_entire_binding()),
            (5, ep.residual.as_entire_binding()),
            (6, self.y.buffer().as_entire_binding()),
        ];
        if self.input_affine {
            res.push((8, ep.in_scale.as_entire_binding()));
            res.push((9, ep.in_bias.as_entire_binding()));
        }
        res
    }
}

/// Invocations per dispatch below which the slab form's dispatches are too small to pay for
/// themselves (measured on lavapipe, see [`one_dispatch_pays`]).
const WHOLE_BELOW: usize = 256;

/// Whether the register-tiled 1x1 GEMM of input `xs` to `cout` channels at `stride` should run
/// as one dispatch over weights in a storage buffer (the `_whole` variants) rather than one
/// dispatch per uniform slab, by its geometry: when the slab form needs several dispatches and
/// each has fewer than [`WHOLE_BELOW`] invocations, and the whole matrix fits a storage binding
/// of `max_binding` bytes. On lavapipe each dispatch has a fixed cost and runs on one thread
/// when it has a single workgroup, while a storage-buffer weight load costs more than a uniform
/// one, so the one-dispatch form pays on small planes only (BENCHMARKS.md). The rule
/// [`KernelPolicy::conv1x1`](crate::gpu::KernelPolicy::conv1x1) applies.
pub(crate) fn one_dispatch_pays(
    xs: Shape4,
    cout: usize,
    stride: usize,
    max_binding: u64,
    wide: bool,
) -> bool {
    let per = if wide && cout >= WIDE_FROM {
        2 * ROWS
    } else {
        ROWS
    };
    let slabs = SlabLayout::new(cout, xs.c, per);
    let lanes = xs.strided(cout, stride).plane().div_ceil(4) * (slabs.rows / per) * xs.n;
    slabs.slabs() > 1
        && lanes < WHOLE_BELOW
        && WholeLayout::new(cout, xs.c, per).bytes() <= max_binding
}

impl PackedGemm<'_> {
    /// [`PackedGemm::build`] in the one-dispatch form: the packing dispatch (marked as setup)
    /// writes the weights as one `[Cout rounded up to per, K rounded up to 4]` matrix, then one
    /// GEMM dispatch covers every block of `per` output channels (workgroup_id.y) and all of K.
    fn build_whole(&self, ctx: &GpuContext, wide: bool, per: usize) -> Result<Dispatch> {
        let op = self.op;
        let device = ctx.device();
        let (xs, cout, depth) = (self.xs, self.cout, self.depth);
        let gemm = match (self.gemm.whole(wide), self.extra) {
            (Some(gemm), None) => gemm,
            _ => {
                return Err(crate::Error::invalid(
                    op,
                    "this GEMM has no one-dispatch form",
                ));
            }
        };
        let ys = xs.strided(cout, self.stride);
        let layout = WholeLayout::new(cout, depth, per);
        let limit = device.limits().max_storage_buffer_binding_size;
        if layout.bytes() > limit {
            return Err(crate::Error::DeviceLimit {
                op,
                what: "packed weight bytes (one storage buffer)",
                needed: layout.bytes(),
                limit,
            });
        }
        let packed = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activeshift packed weights (whole)"),
            size: layout.bytes(),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        ctx.count_buffer(0);
        // One "slab" holding the whole matrix: the packing shader writes it from offset 0.
        let dispatch = self.pack_dispatch(ctx, &packed, layout.rows, layout.kc, 1, 1)?;
        let params = GemmParams {
            flags: self.epilogue.flags,
            k1: u32_of(op, "input channels", depth)?,
            nrows: u32_of(op, "output channels", cout)?,
            ..self.base_params(layout.kc)?
        };
        // One invocation per 4 output pixels (x) and block of `per` output channels (y).
        let groups = workgroups(
            op,
            device,
            [
                ys.plane().div_ceil(4).div_ceil(GEMM_WG),
                cout.div_ceil(per),
                xs.n,
            ],
        )?;
        let res = self.bindings((7, packed.as_entire_binding()));
        Ok(dispatch.then(gemm.prepare_bindings(device, &params, &res, groups)))
    }
}

/// The weights of a one-dispatch packed GEMM: `rows` (Cout rounded up to the rows per
/// invocation) times `kc` (K rounded up to 4) floats.
#[derive(Clone, Copy, Debug)]
struct WholeLayout {
    rows: usize,
    kc: usize,
}

impl WholeLayout {
    fn new(cout: usize, depth: usize, per: usize) -> Self {
        Self {
            rows: cout.div_ceil(per) * per,
            kc: depth.div_ceil(4) * 4,
        }
    }
    fn bytes(&self) -> u64 {
        (self.rows * self.kc * 4) as u64
    }
}

/// The entry points of a packed GEMM's WGSL (32 and 64 output channels per invocation; for
/// the 1x1 GEMMs also their one-dispatch `_whole` forms), each pipeline built on first use.
pub(crate) struct PackedPipelines {
    narrow: LazyPipeline,
    wide: LazyPipeline,
    whole: Option<[LazyPipeline; 2]>,
}

impl PackedPipelines {
    pub(crate) fn new(device: &wgpu::Device, file: &'static str) -> Self {
        Self {
            narrow: LazyPipeline::new(device, file, "main"),
            wide: LazyPipeline::new(device, file, "main_wide"),
            whole: None,
        }
    }
    /// For a WGSL that also has `main_whole` and `main_wide_whole`.
    pub(super) fn with_whole(device: &wgpu::Device, file: &'static str) -> Self {
        Self {
            whole: Some([
                LazyPipeline::new(device, file, "main_whole"),
                LazyPipeline::new(device, file, "main_wide_whole"),
            ]),
            ..Self::new(device, file)
        }
    }
    /// The slab form's pipeline for 64 (`wide`) or 32 output channels per invocation.
    fn slabs(&self, wide: bool) -> &Pipeline {
        if wide { &self.wide } else { &self.narrow }.get()
    }
    /// The one-dispatch form's pipeline (None if this WGSL has none).
    fn whole(&self, wide: bool) -> Option<&Pipeline> {
        self.whole
            .as_ref()
            .map(|[narrow, wide_whole]| if wide { wide_whole } else { narrow }.get())
    }
}
