//! [`KernelPolicy`]: the one place that decides which kernel variant runs.

use super::kernels::{AslConv1x1Variant, AslForwardVariant, Conv1x1Variant};
use crate::shape::Shape4;

/// Which set of kernels inference picks from: the one for hardware GPUs (workgroup-tiled
/// GEMM, direct 3x3 stem, vec4 ASL, the ASL fused into the tiled GEMM) or the one for CPU
/// adapters such as lavapipe and SwiftShader (register-tiled GEMMs over packed weights, im2col
/// stem, row-sliding ASL, unfused). Every kernel computes the same results; the family only
/// decides speed. See [`KernelPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFamily {
    /// The kernels for hardware GPUs.
    Gpu,
    /// The kernels for CPU adapters.
    Cpu,
}

/// Which kernel variant runs for each op and shape on one device: computed once per
/// [`GpuContext`](super::GpuContext) from the adapter's info, plus the overrides of a
/// [`KernelPolicyBuilder`] (the library reads no environment variable for this; the
/// `activeshift` program maps `ACTIVESHIFT_KERNELS` and `ACTIVESHIFT_FUSED` onto the builder).
///
/// The rules, measured so far on CPU adapters only (BENCHMARKS.md):
/// - the [`KernelFamily`]: [`KernelFamily::Cpu`] on CPU adapters (`wgpu::DeviceType::Cpu`:
///   lavapipe, SwiftShader), [`KernelFamily::Gpu`] elsewhere. The register-tiled GEMMs hold 128
///   to 256 accumulators per invocation, and no hardware GPU has measured them yet.
/// - SwiftShader (or any CPU adapter in a browser, which is what Chromium offers) compiles the
///   row-sliding ASL kernel and the vec4 fused GEMM for minutes, and runs the fused block and
///   the one-dispatch GEMMs no faster: those stay off there.
/// - The ASL runs fused into its 1x1 convolution by default on hardware GPUs (it saves a write
///   and a read of every shifted tensor; to be confirmed by `activeshift bench` on one), not
///   on CPU adapters, where the unfused pair measured as fast or faster.
/// - The register-tiled 1x1 GEMM runs as one dispatch over weights in a storage buffer where
///   the slab form would need several dispatches of fewer than 256 invocations each (small
///   planes, where a dispatch's fixed cost dominates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelPolicy {
    family: KernelFamily,
    slow_compiler: bool,
    fused: bool,
    max_binding: u64,
}

/// Explicit choices that override [`KernelPolicy`]'s rules; unset ones follow the adapter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPolicyBuilder {
    family: Option<KernelFamily>,
    fused: Option<bool>,
}

impl KernelPolicyBuilder {
    /// Fix the kernel family (None: by adapter), e.g. to run on lavapipe what a hardware GPU
    /// runs, or to compare the two.
    pub fn family(mut self, family: Option<KernelFamily>) -> Self {
        self.family = family;
        self
    }

    /// Fix whether each ASL runs fused into its 1x1 convolution by default (None: by the
    /// kernel family). [`GpuModel::set_fused`](crate::GpuModel::set_fused) still chooses per
    /// model.
    pub fn fused(mut self, fused: Option<bool>) -> Self {
        self.fused = fused;
        self
    }

    /// The policy for the adapter `info` describes, on a device whose storage bindings hold at
    /// most `max_binding` bytes.
    pub fn build(&self, info: &wgpu::AdapterInfo, max_binding: u64) -> KernelPolicy {
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let family = self.family.unwrap_or(if cpu {
            KernelFamily::Cpu
        } else {
            KernelFamily::Gpu
        });
        KernelPolicy {
            family,
            slow_compiler: cpu && swiftshader_like(info),
            fused: self.fused.unwrap_or(family == KernelFamily::Gpu),
            max_binding,
        }
    }
}

/// Whether `info` names SwiftShader, or a CPU adapter in the browser (where that is what
/// Chromium offers). The only adapter-name test in the library.
fn swiftshader_like(info: &wgpu::AdapterInfo) -> bool {
    let named = |s: &str| s.to_ascii_lowercase().contains("swiftshader");
    info.backend == wgpu::Backend::BrowserWebGpu
        || named(&info.name)
        || named(&info.driver)
        || named(&info.driver_info)
}

impl KernelPolicy {
    /// No override: the rules for the adapter.
    pub fn builder() -> KernelPolicyBuilder {
        KernelPolicyBuilder::default()
    }

    /// The kernel family.
    pub fn family(&self) -> KernelFamily {
        self.family
    }

    /// Whether the 1x1 convolutions and the stem run the register-tiled GEMMs over packed
    /// weights (the CPU family), else the workgroup-tiled GEMM and the direct 3x3.
    pub fn register_tiled(&self) -> bool {
        self.family == KernelFamily::Cpu
    }

    /// Whether [`GpuModel`](crate::GpuModel) fuses each ASL into its 1x1 convolution by
    /// default.
    pub fn fused_by_default(&self) -> bool {
        self.fused
    }

    /// The 1x1 GEMM for input `xs` to `cout` channels at `stride`.
    pub fn conv1x1(&self, xs: Shape4, cout: usize, stride: usize) -> Conv1x1Variant {
        let vec4 = Conv1x1Variant::Vec4.supports(xs, stride);
        if !self.register_tiled() {
            Conv1x1Variant::Tiled
        } else if !self.slow_compiler
            && super::kernels::one_dispatch_pays(xs, cout, stride, self.max_binding)
        {
            if vec4 {
                Conv1x1Variant::Vec4Whole
            } else {
                Conv1x1Variant::RegisterWhole
            }
        } else if vec4 {
            Conv1x1Variant::Vec4
        } else {
            Conv1x1Variant::Register
        }
    }

    /// The ASL forward kernel for input `xs` at `stride`.
    pub fn asl_forward(&self, xs: Shape4, stride: usize) -> AslForwardVariant {
        if !AslForwardVariant::Vec4.supports(xs, stride) {
            AslForwardVariant::Scalar
        } else if self.register_tiled() && !self.slow_compiler {
            AslForwardVariant::Rows
        } else {
            AslForwardVariant::Vec4
        }
    }

    /// The fused ASL + 1x1 GEMM for input `xs` at `stride`.
    pub fn asl_conv1x1(&self, xs: Shape4, stride: usize) -> AslConv1x1Variant {
        if !self.register_tiled() {
            AslConv1x1Variant::Tiled
        } else if AslConv1x1Variant::Vec4.supports(xs, stride) && !self.slow_compiler {
            AslConv1x1Variant::Vec4
        } else {
            AslConv1x1Variant::Register
        }
    }
}
