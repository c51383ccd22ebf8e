//! The 1x1 convolution GEMMs with their epilogue (four variants: naive, workgroup-tiled,
//! register-tiled over packed weights, and its vec4 form), the weight packing they share with
//! the fused ASL GEMM and the im2col 3x3, and the two GEMMs of the backward pass.

use super::{Dispatch, LazyPipeline, Pipeline, expect_dims, expect_distinct, u32_of, workgroups};
use crate::error::Result;
use crate::gpu::{GpuContext, GpuTensor};
use crate::shape::{Shape4, check_nonempty, check_stride};

/// Output tile of the workgroup-tiled GEMMs (`TILE_M` x `TILE_N` in their WGSL).
const TILE: usize = 64;
/// Step along K of the GEMM kernels (`TILE_K` in their WGSL).
const TILE_K: usize = 16;
pub(crate) const FLAG_AFFINE: u32 = 1;
pub(crate) const FLAG_RESIDUAL: u32 = 2;
pub(crate) const FLAG_RELU: u32 = 4;
/// Read each input value through `max(in_scale[ci] * x + in_bias[ci], 0)` (the 1x1 GEMMs).
const FLAG_INPUT_AFFINE: u32 = 16;

/// Mirrors `struct Conv1x1Params` in `shaders/common/conv1x1_params.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Conv1x1Params {
    pub(crate) n: u32,
    pub(crate) cin: u32,
    pub(crate) cout: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) ho: u32,
    pub(crate) wo: u32,
    pub(crate) stride: u32,
    pub(crate) flags: u32,
    /// The backward weight kernel only: terms of K per chunk.
    pub(crate) k_chunk: u32,
    /// The backward weight kernel only: number of chunks.
    pub(crate) splits: u32,
    pub(crate) _pad: u32,
}

impl Conv1x1Params {
    pub(crate) fn new(
        op: &'static str,
        xs: Shape4,
        cout: usize,
        stride: usize,
        flags: u32,
    ) -> Result<Self> {
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
            k_chunk: 0,
            splits: 0,
            _pad: 0,
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
    /// `(scale, bias)`, each `[Cin]`, applied to the *input* as it is read:
    /// `x' = max(scale[ci] * x + bias[ci], 0)`, a per-channel affine + ReLU (a pre-activation)
    /// folded into the convolution that reads it, so that it needs no launch and no tensor of
    /// its own. [`Conv1x1`] only; the other kernels that take an epilogue refuse it.
    pub input_affine_relu: Option<(&'a GpuTensor, &'a GpuTensor)>,
}

/// The GEMM kernels behind [`Conv1x1`]: same results, different tiling. [`Conv1x1::prepare`]
/// picks one by shape; [`Conv1x1::prepare_variant`] runs a named one (benchmarks, tests: every
/// variant is checked against the CPU twin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conv1x1Variant {
    /// `shaders/conv1x1_naive.wgsl`: one invocation per output value, no reuse (the baseline).
    Naive,
    /// `shaders/conv1x1.wgsl`: 64x64 output tiles through workgroup memory, 4x4 outputs per
    /// invocation (what [`Conv1x1::prepare`] uses on adapters other than CPU ones).
    Tiled,
    /// `shaders/conv1x1_reg.wgsl`: no workgroup memory; each invocation owns 4 output pixels
    /// and 32 output channels (64 from 64 output channels on); weights packed into
    /// uniform-buffer slabs. Any shape and stride.
    Register,
    /// `shaders/conv1x1_vec4.wgsl`: as [`Conv1x1Variant::Register`] with vec4 loads and stores
    /// of the pixels; stride 1 and `H*W` divisible by 4 only.
    Vec4,
    /// [`Conv1x1Variant::Register`] as one dispatch (`main_whole` entry points): all the packed
    /// weights in one storage buffer instead of one uniform slab per dispatch. For small planes,
    /// where several slab dispatches would each have little work ([`Conv1x1::choose`]).
    RegisterWhole,
    /// [`Conv1x1Variant::Vec4`] as one dispatch, as [`Conv1x1Variant::RegisterWhole`].
    Vec4Whole,
}

impl Conv1x1Variant {
    /// Every variant.
    pub const ALL: [Conv1x1Variant; 6] = [
        Self::Naive,
        Self::Tiled,
        Self::Register,
        Self::Vec4,
        Self::RegisterWhole,
        Self::Vec4Whole,
    ];

    /// A short name (`naive`, `tiled`, `register`, `vec4`, `register_whole`, `vec4_whole`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Naive => "naive",
            Self::Tiled => "tiled",
            Self::Register => "register",
            Self::Vec4 => "vec4",
            Self::RegisterWhole => "register_whole",
            Self::Vec4Whole => "vec4_whole",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Self::Naive => "conv1x1_naive.wgsl",
            Self::Tiled => "conv1x1.wgsl",
            Self::Register | Self::RegisterWhole => "conv1x1_reg.wgsl",
            Self::Vec4 | Self::Vec4Whole => "conv1x1_vec4.wgsl",
        }
    }

    /// Whether this variant computes a 1x1 convolution of input `xs` at `stride` (only
    /// [`Conv1x1Variant::Vec4`] and [`Conv1x1Variant::Vec4Whole`] are limited: stride 1 and
    /// `H*W` divisible by 4).
    pub fn supports(self, xs: Shape4, stride: usize) -> bool {
        match self {
            Self::Vec4 | Self::Vec4Whole => stride == 1 && xs.plane().is_multiple_of(4),
            _ => true,
        }
    }
}

/// Floats per uniform-buffer slab of packed weights (64 KiB, WebGPU's default
/// `max_uniform_buffer_binding_size`; `SLAB` in the WGSL).
pub(crate) const SLAB: usize = 16384;
/// Output channels per invocation of the packed GEMMs' `main` entry point; `main_wide` owns
/// twice as many and is used from [`WIDE_FROM`] output channels on.
const ROWS: usize = 32;
/// Output channels from which the packed GEMMs use their `main_wide` entry point.
pub(crate) const WIDE_FROM: usize = 64;
/// Invocations per workgroup of the packed GEMMs (`WG_SIZE` in their WGSL).
const GEMM_WG: usize = 32;
const FLAG_ACCUMULATE: u32 = 8;

/// Mirrors `struct PackParams` in `shaders/conv1x1_pack.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PackParams {
    pub(crate) cout: u32,
    pub(crate) cin: u32,
    pub(crate) kc: u32,
    pub(crate) rows: u32,
    pub(crate) nk: u32,
    pub(crate) len: u32,
    pub(crate) _pad: [u32; 2],
}

/// Mirrors `struct GemmParams` in `shaders/common/gemm_params.wgsl` (used by `shaders/gemm/*`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct GemmParams {
    pub(crate) n: u32,
    pub(crate) cin: u32,
    pub(crate) cout: u32,
    pub(crate) h: u32,
    pub(crate) w: u32,
    pub(crate) ho: u32,
    pub(crate) wo: u32,
    pub(crate) stride: u32,
    pub(crate) flags: u32,
    pub(crate) row0: u32,
    pub(crate) kc: u32,
    pub(crate) k0: u32,
    pub(crate) k1: u32,
    pub(crate) nrows: u32,
    pub(crate) _pad: [u32; 2],
}

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
        let wide = cout >= WIDE_FROM;
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
            _pad: [0; 2],
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
            _pad: [0; 2],
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
pub(crate) fn one_dispatch_pays(xs: Shape4, cout: usize, stride: usize, max_binding: u64) -> bool {
    let per = if cout >= WIDE_FROM { 2 * ROWS } else { ROWS };
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
    fn with_whole(device: &wgpu::Device, file: &'static str) -> Self {
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

/// The epilogue's buffers and flags, shared by the 1x1 GEMMs (plain and shifted).
pub(crate) struct EpilogueBinding<'b> {
    pub(crate) flags: u32,
    pub(crate) scale: &'b wgpu::Buffer,
    pub(crate) bias: &'b wgpu::Buffer,
    pub(crate) residual: &'b wgpu::Buffer,
    /// The input affine's `[Cin]` scale and bias (bindings 8 and 9 of the 1x1 GEMMs).
    pub(crate) in_scale: &'b wgpu::Buffer,
    pub(crate) in_bias: &'b wgpu::Buffer,
}

/// Check `epilogue` against an output of shape `ys` and pick its buffers (placeholders for the
/// parts that are off). `cin`: the input channels, for a kernel that takes
/// [`Conv1x1Epilogue::input_affine_relu`] (None: the kernel refuses it).
pub(crate) fn bind_epilogue<'b>(
    op: &'static str,
    ctx: &'b GpuContext,
    epilogue: &Conv1x1Epilogue<'b>,
    ys: Shape4,
    cin: Option<usize>,
) -> Result<EpilogueBinding<'b>> {
    let mut flags = 0;
    if let Some((scale, bias)) = epilogue.input_affine_relu {
        let Some(cin) = cin else {
            return Err(crate::Error::invalid(
                op,
                "this kernel takes no input affine (only the 1x1 convolution does)",
            ));
        };
        expect_dims(op, "input affine scale", scale, &[cin])?;
        expect_dims(op, "input affine bias", bias, &[cin])?;
        flags |= FLAG_INPUT_AFFINE;
    }
    if let Some((scale, bias)) = epilogue.affine {
        expect_dims(op, "affine scale", scale, &[ys.c])?;
        expect_dims(op, "affine bias", bias, &[ys.c])?;
        flags |= FLAG_AFFINE;
    }
    if let Some(r) = epilogue.residual {
        expect_dims(op, "residual", r, &ys.dims())?;
        flags |= FLAG_RESIDUAL;
    }
    if epilogue.relu {
        flags |= FLAG_RELU;
    }
    let none = ctx.kernels().placeholder();
    let (scale, bias) = epilogue
        .affine
        .map_or((none, none), |(s, b)| (s.buffer(), b.buffer()));
    let residual = epilogue.residual.map_or(none, |r| r.buffer());
    let (in_scale, in_bias) = epilogue
        .input_affine_relu
        .map_or((none, none), |(s, b)| (s.buffer(), b.buffer()));
    Ok(EpilogueBinding {
        flags,
        scale,
        bias,
        residual,
        in_scale,
        in_bias,
    })
}

/// The output channels of a `[Cout, Cin]` weight whose `Cin` must be `cin`.
pub(crate) fn weight_cout(op: &'static str, weight: &GpuTensor, cin: usize) -> Result<usize> {
    match weight.dims() {
        [cout, c] if *c == cin && *cout > 0 => Ok(*cout),
        d => Err(crate::Error::shape(
            op,
            "weight",
            format!("[Cout, {cin}] with Cout >= 1"),
            format!("{d:?}"),
        )),
    }
}

/// `shaders/conv1x1*.wgsl`: 1x1 convolution with stride and epilogue, as a GEMM (one pipeline
/// per [`Conv1x1Variant`], each built on first use).
pub struct Conv1x1 {
    naive: LazyPipeline,
    tiled: LazyPipeline,
    register: PackedPipelines,
    vec4: PackedPipelines,
    pack: LazyPipeline,
}

impl Conv1x1 {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        Self {
            naive: LazyPipeline::new(device, Conv1x1Variant::Naive.file(), "main"),
            tiled: LazyPipeline::new(device, Conv1x1Variant::Tiled.file(), "main"),
            register: PackedPipelines::with_whole(device, Conv1x1Variant::Register.file()),
            vec4: PackedPipelines::with_whole(device, Conv1x1Variant::Vec4.file()),
            pack: LazyPipeline::new(device, "conv1x1_pack.wgsl", "main"),
        }
    }

    /// The pipeline of the naive or tiled variant.
    fn pipeline(&self, v: Conv1x1Variant) -> &Pipeline {
        match v {
            Conv1x1Variant::Naive => self.naive.get(),
            _ => self.tiled.get(),
        }
    }

    /// `shaders/conv1x1_pack.wgsl`, shared with the fused ASL GEMM.
    pub(crate) fn pack_pipeline(&self) -> &Pipeline {
        self.pack.get()
    }

    /// The variant [`Conv1x1::prepare`] uses for input `xs` to `cout` channels at `stride`
    /// under `policy` ([`KernelPolicy::conv1x1`](crate::gpu::KernelPolicy::conv1x1)).
    pub fn choose(
        policy: &crate::gpu::KernelPolicy,
        xs: Shape4,
        cout: usize,
        stride: usize,
    ) -> Conv1x1Variant {
        policy.conv1x1(xs, cout, stride)
    }

    /// Prepare (validate shapes, bind buffers) the dispatch computing `y = epilogue(W x)` with
    /// `x` `[N, Cin, H, W]`, `weight` `[Cout, Cin]` and `y` `[N, Cout, (H-1)/s+1, (W-1)/s+1]`,
    /// with the variant [`Conv1x1::choose`] picks.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        epilogue: Conv1x1Epilogue<'_>,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        let xs = x.shape4("conv1x1", "input")?;
        let cout = weight_cout("conv1x1", weight, xs.c)?;
        self.prepare_variant(
            Self::choose(ctx.policy(), xs, cout, stride),
            ctx,
            x,
            weight,
            stride,
            epilogue,
            y,
        )
    }

    /// [`Conv1x1::prepare`] with a given variant.
    ///
    /// # Errors
    /// As [`Conv1x1::prepare`], and [`crate::Error::InvalidArgument`] when the variant does
    /// not handle the shape ([`Conv1x1Variant::supports`]).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_variant(
        &self,
        variant: Conv1x1Variant,
        ctx: &GpuContext,
        x: &GpuTensor,
        weight: &GpuTensor,
        stride: usize,
        epilogue: Conv1x1Epilogue<'_>,
        y: &GpuTensor,
    ) -> Result<Dispatch> {
        const OP: &str = "conv1x1";
        let xs = x.shape4(OP, "input")?;
        let cout = weight_cout(OP, weight, xs.c)?;
        let params = Conv1x1Params::new(OP, xs, cout, stride, 0)?;
        let ys = xs.strided(cout, stride);
        let ep = bind_epilogue(OP, ctx, &epilogue, ys, Some(xs.c))?;
        expect_dims(OP, "output", y, &ys.dims())?;
        expect_distinct(OP, y, &[("input", x), ("weight", weight)])?;
        if let Some(r) = epilogue.residual {
            expect_distinct(OP, y, &[("residual", r)])?;
        }
        let device = ctx.device();
        if !variant.supports(xs, stride) {
            return Err(crate::Error::invalid(
                OP,
                format!(
                    "the {} variant does not handle input {xs} at stride {stride}",
                    variant.name()
                ),
            ));
        }
        match variant {
            Conv1x1Variant::Naive | Conv1x1Variant::Tiled => {
                let params = Conv1x1Params {
                    flags: ep.flags,
                    ..params
                };
                let groups = match variant {
                    Conv1x1Variant::Naive => [ys.plane().div_ceil(64), cout, xs.n],
                    _ => [ys.plane().div_ceil(TILE), cout.div_ceil(TILE), xs.n],
                };
                let groups = workgroups(OP, device, groups)?;
                Ok(self.pipeline(variant).prepare(
                    device,
                    &params,
                    &[
                        (1, x.buffer()),
                        (2, weight.buffer()),
                        (3, ep.scale),
                        (4, ep.bias),
                        (5, ep.residual),
                        (6, y.buffer()),
                        (8, ep.in_scale),
                        (9, ep.in_bias),
                    ],
                    groups,
                ))
            }
            Conv1x1Variant::Register
            | Conv1x1Variant::Vec4
            | Conv1x1Variant::RegisterWhole
            | Conv1x1Variant::Vec4Whole => PackedGemm {
                op: OP,
                gemm: match variant {
                    Conv1x1Variant::Vec4 | Conv1x1Variant::Vec4Whole => &self.vec4,
                    _ => &self.register,
                },
                whole: matches!(
                    variant,
                    Conv1x1Variant::RegisterWhole | Conv1x1Variant::Vec4Whole
                ),
                input_affine: true,
                pack: self.pack_pipeline(),
                x,
                xs,
                depth: xs.c,
                weight,
                cout,
                stride,
                epilogue: &ep,
                y,
                extra: None,
            }
            .build(ctx),
        }
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
        params.k_chunk = u32_of(OP, "terms per chunk", k_chunk)?;
        params.splits = u32_of(OP, "chunks", splits)?;
        let device = ctx.device();
        let part = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activeshift conv1x1_backward_weight chunks"),
            size: (splits * cout * xs.c * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        ctx.count_buffer(0);
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
        let blocks = (cout * xs.c).div_ceil(256);
        let reduce = self.reduce.prepare(
            device,
            &params,
            &[(3, dw.buffer()), (4, &part)],
            workgroups(OP, device, super::elementwise::grid(device, blocks))?,
        );
        Ok(partial.then(reduce))
    }
}
