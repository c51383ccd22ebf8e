//! [`KernelPolicy`]: the one place that decides which kernel variant runs.

use super::kernels::{AslConv1x1Variant, AslForwardVariant, Conv1x1Variant};
use super::tune::{TuneKey, TunedOp, Tuning};
use crate::shape::Shape4;
use std::sync::{Arc, Mutex};

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
///
/// With a [`Tuning`] ([`KernelPolicyBuilder::tuning`]), an op and shape it measured runs the
/// variant measured fastest; the rules decide the others. Without one (the default, and what
/// the tests run) the choice is deterministic.
#[derive(Clone, Debug)]
pub struct KernelPolicy {
    family: KernelFamily,
    slow_compiler: bool,
    fused: bool,
    wide_gemm: bool,
    max_binding: u64,
    tuning: Option<Arc<Tuning>>,
    /// Every op and shape asked about, in order (what `activeshift tune` measures).
    asked: Arc<Mutex<Vec<TuneKey>>>,
}

impl PartialEq for KernelPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.family == other.family
            && self.slow_compiler == other.slow_compiler
            && self.fused == other.fused
            && self.wide_gemm == other.wide_gemm
            && self.max_binding == other.max_binding
            && self.tuning == other.tuning
    }
}

/// Explicit choices that override [`KernelPolicy`]'s rules; unset ones follow the adapter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelPolicyBuilder {
    family: Option<KernelFamily>,
    fused: Option<bool>,
    wide_gemm: Option<bool>,
    tuning: Option<Arc<Tuning>>,
}

impl KernelPolicyBuilder {
    /// Fix the kernel family (None: by adapter), e.g. to run on lavapipe what a hardware GPU
    /// runs, or to compare the two.
    pub fn family(mut self, family: Option<KernelFamily>) -> Self {
        self.family = family;
        self
    }

    /// Fix whether each ASL runs fused into its 1x1 convolution by default (None: by the
    /// kernel family). A network's GPU engine may still choose per model.
    pub fn fused(mut self, fused: Option<bool>) -> Self {
        self.fused = fused;
        self
    }

    /// Whether the register-tiled GEMMs use their 64-row entry points from 64 output channels
    /// on (None: no, [`KernelPolicy::wide_gemm`]).
    pub fn wide_gemm(mut self, wide: Option<bool>) -> Self {
        self.wide_gemm = wide;
        self
    }

    /// Choose by measurement where `tuning` has a decision (None: the rules everywhere).
    pub fn tuning(mut self, tuning: Option<Tuning>) -> Self {
        self.tuning = tuning.map(Arc::new);
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
            wide_gemm: self.wide_gemm.unwrap_or(false),
            max_binding,
            tuning: self.tuning.clone(),
            asked: Arc::new(Mutex::new(Vec::new())),
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

    /// Whether the register-tiled GEMMs give layers with 64 or more output channels to their
    /// 64-row entry points (`main_wide`, `main_wide_whole`), else to the 32-row ones. Off unless
    /// asked for ([`KernelPolicyBuilder::wide_gemm`]): a 64-row pipeline takes about 4 times as
    /// long to compile as a 32-row one (on llvmpipe, 4-8 s of CPU against 1-2 s, at its first
    /// dispatch), and w32's plan needs four of them, for a warm speed within the noise of a
    /// shared 2-core host (docs/performance.md, "Kernel compile cost").
    pub fn wide_gemm(&self) -> bool {
        self.wide_gemm
    }

    /// Whether a network's GPU engine fuses each ASL into its 1x1 convolution by default (the
    /// model layer reads this when it lowers a plan; this layer knows no networks).
    pub fn fused_by_default(&self) -> bool {
        self.fused
    }

    /// The measured decision for `key`, if there is one and it names a variant for `key`.
    fn tuned<V: Copy>(
        &self,
        key: TuneKey,
        all: &[V],
        name: impl Fn(V) -> &'static str,
    ) -> Option<V> {
        if let Ok(mut asked) = self.asked.lock()
            && !asked.contains(&key)
        {
            asked.push(key);
        }
        let chosen = self.tuning.as_ref()?.chosen(&key)?;
        key.candidates()
            .contains(&chosen)
            .then(|| all.iter().copied().find(|v| name(*v) == chosen))
            .flatten()
    }

    /// Every op and shape this policy has been asked about, in order.
    pub fn asked(&self) -> Vec<TuneKey> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// The variants [`tune`](super::tune::tune) times for `key` on this device: those of
    /// [`TuneKey::candidates`], less the ones whose pipelines this device compiles too slowly
    /// to try within a tuning budget (on SwiftShader-like adapters, the row-sliding ASL and
    /// the vec4 fused GEMM, which the rules keep off there for the same reason).
    pub fn candidates(&self, key: &TuneKey) -> Vec<&'static str> {
        let too_slow = |name: &str| match key.op {
            TunedOp::AslForward => name == AslForwardVariant::Rows.name(),
            TunedOp::AslConv1x1 => name == AslConv1x1Variant::Vec4.name(),
            TunedOp::Conv1x1 => false,
        };
        key.candidates()
            .into_iter()
            .filter(|name| !(self.slow_compiler && too_slow(name)))
            .collect()
    }

    /// The name of the variant the rules pick for `key` (whatever a tuning says).
    pub fn rule(&self, key: &TuneKey) -> &'static str {
        match key.op {
            TunedOp::Conv1x1 => self.rule_conv1x1(key.xs, key.cout, key.stride).name(),
            TunedOp::AslForward => self.rule_asl_forward(key.xs, key.stride).name(),
            TunedOp::AslConv1x1 => self.rule_asl_conv1x1(key.xs, key.stride).name(),
        }
    }

    /// The 1x1 GEMM for input `xs` to `cout` channels at `stride`.
    pub fn conv1x1(&self, xs: Shape4, cout: usize, stride: usize) -> Conv1x1Variant {
        let key = TuneKey {
            op: TunedOp::Conv1x1,
            xs,
            cout,
            stride,
        };
        self.tuned(key, &Conv1x1Variant::ALL, Conv1x1Variant::name)
            .unwrap_or_else(|| self.rule_conv1x1(xs, cout, stride))
    }

    fn rule_conv1x1(&self, xs: Shape4, cout: usize, stride: usize) -> Conv1x1Variant {
        let vec4 = Conv1x1Variant::Vec4.supports(xs, stride);
        if !self.register_tiled() {
            Conv1x1Variant::Tiled
        } else if !self.slow_compiler
            && super::kernels::one_dispatch_pays(xs, cout, stride, self.max_binding, self.wide_gemm)
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

    /// How the 1x1 convolution's input gradient runs for the output gradient `dys`
    /// (`[N, Cout, Ho, Wo]`) of a convolution from `cin` channels at `stride`: `Some(variant)`,
    /// the forward pass's packed GEMM of that variant over the transposed weight (stride 1,
    /// where the forward choice for that shape is a packed GEMM: the CPU adapters' family);
    /// `None`, the direct kernel `conv1x1_backward_input.wgsl` (which also writes the zeros a
    /// stride leaves).
    pub fn conv1x1_backward_input(
        &self,
        dys: Shape4,
        cin: usize,
        stride: usize,
    ) -> Option<Conv1x1Variant> {
        if stride != 1 {
            return None;
        }
        let v = self.conv1x1(dys, cin, 1);
        (v != Conv1x1Variant::Tiled).then_some(v)
    }

    /// The ASL forward kernel for input `xs` at `stride`.
    pub fn asl_forward(&self, xs: Shape4, stride: usize) -> AslForwardVariant {
        let key = TuneKey {
            op: TunedOp::AslForward,
            xs,
            cout: xs.c,
            stride,
        };
        self.tuned(key, &AslForwardVariant::ALL, AslForwardVariant::name)
            .unwrap_or_else(|| self.rule_asl_forward(xs, stride))
    }

    /// [`KernelPolicy::asl_forward`] by the rules only, without recording the shape.
    pub(crate) fn rule_asl_forward(&self, xs: Shape4, stride: usize) -> AslForwardVariant {
        if !AslForwardVariant::Vec4.supports(xs, stride) {
            AslForwardVariant::Scalar
        } else if self.register_tiled() && !self.slow_compiler {
            AslForwardVariant::Rows
        } else {
            AslForwardVariant::Vec4
        }
    }

    /// The fused ASL + 1x1 GEMM for input `xs` to `cout` channels at `stride`.
    pub fn asl_conv1x1(&self, xs: Shape4, cout: usize, stride: usize) -> AslConv1x1Variant {
        let key = TuneKey {
            op: TunedOp::AslConv1x1,
            xs,
            cout,
            stride,
        };
        self.tuned(key, &AslConv1x1Variant::ALL, AslConv1x1Variant::name)
            .unwrap_or_else(|| self.rule_asl_conv1x1(xs, stride))
    }

    fn rule_asl_conv1x1(&self, xs: Shape4, stride: usize) -> AslConv1x1Variant {
        if !self.register_tiled() {
            AslConv1x1Variant::Tiled
        } else if AslConv1x1Variant::Vec4.supports(xs, stride) && !self.slow_compiler {
            AslConv1x1Variant::Vec4
        } else {
            AslConv1x1Variant::Register
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::tune::TuneEntry;

    fn adapter(kind: wgpu::DeviceType, backend: wgpu::Backend, name: &str) -> wgpu::AdapterInfo {
        let mut info = wgpu::AdapterInfo::new(kind, backend);
        info.name = name.into();
        info
    }

    const BIG: u64 = 1 << 30;

    #[test]
    fn the_rules_follow_the_adapter_and_the_overrides() {
        let xs = Shape4::new(1, 64, 56, 56);
        let lavapipe = adapter(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan, "llvmpipe");
        let swiftshader = adapter(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan, "SwiftShader");
        let browser = adapter(wgpu::DeviceType::Cpu, wgpu::Backend::BrowserWebGpu, "");
        let gpu = adapter(
            wgpu::DeviceType::DiscreteGpu,
            wgpu::Backend::Vulkan,
            "Some GPU",
        );
        let b = KernelPolicy::builder();

        let p = b.build(&lavapipe, BIG);
        assert_eq!(p.family(), KernelFamily::Cpu);
        assert!(!p.fused_by_default());
        assert_eq!(p.asl_forward(xs, 1), AslForwardVariant::Rows);
        assert_eq!(p.asl_conv1x1(xs, 64, 1), AslConv1x1Variant::Vec4);
        assert_eq!(p.conv1x1(xs, 64, 1), Conv1x1Variant::Vec4);
        let small = Shape4::new(1, 256, 7, 7);
        assert_eq!(p.conv1x1(small, 256, 1), Conv1x1Variant::RegisterWhole);
        // The one-dispatch form needs the whole matrix in one binding.
        assert_eq!(
            b.build(&lavapipe, 1024).conv1x1(small, 256, 1),
            Conv1x1Variant::Register
        );

        for slow in [&swiftshader, &browser] {
            let p = b.build(slow, BIG);
            // The tuner does not try what compiles for minutes there.
            let asl = TuneKey {
                op: TunedOp::AslForward,
                xs,
                cout: 64,
                stride: 1,
            };
            let fused = TuneKey {
                op: TunedOp::AslConv1x1,
                ..asl
            };
            assert!(asl.candidates().contains(&"rows"));
            assert!(!p.candidates(&asl).contains(&"rows"));
            assert!(p.candidates(&asl).contains(&"vec4"));
            assert!(fused.candidates().contains(&"vec4"));
            assert!(!p.candidates(&fused).contains(&"vec4"));
            assert_eq!(
                b.build(&lavapipe, BIG).candidates(&fused),
                fused.candidates()
            );
            assert_eq!(p.family(), KernelFamily::Cpu);
            assert_eq!(p.asl_forward(xs, 1), AslForwardVariant::Vec4);
            assert_eq!(p.asl_conv1x1(xs, 64, 1), AslConv1x1Variant::Register);
            assert_eq!(p.conv1x1(small, 256, 1), Conv1x1Variant::Register);
        }

        let p = b.build(&gpu, BIG);
        assert_eq!(p.family(), KernelFamily::Gpu);
        assert!(p.fused_by_default());
        assert_eq!(p.conv1x1(xs, 64, 1), Conv1x1Variant::Tiled);
        assert_eq!(p.asl_forward(xs, 1), AslForwardVariant::Vec4);
        assert_eq!(p.asl_conv1x1(xs, 64, 1), AslConv1x1Variant::Tiled);
        // Odd widths and stride 2 have the scalar ASL only.
        assert_eq!(
            p.asl_forward(Shape4::new(1, 3, 5, 7), 1),
            AslForwardVariant::Scalar
        );
        assert_eq!(p.asl_forward(xs, 2), AslForwardVariant::Scalar);

        let p = b
            .clone()
            .family(Some(KernelFamily::Cpu))
            .fused(Some(true))
            .build(&gpu, BIG);
        assert!(p.register_tiled() && p.fused_by_default());
        assert_eq!(p.conv1x1(xs, 64, 1), Conv1x1Variant::Vec4);
        let p = b.fused(Some(false)).build(&gpu, BIG);
        assert!(!p.fused_by_default());
    }

    #[test]
    fn a_tuning_decides_where_it_measured_and_the_rules_elsewhere() {
        let lavapipe = adapter(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan, "llvmpipe");
        let xs = Shape4::new(1, 64, 56, 56);
        let key = TuneKey {
            op: TunedOp::Conv1x1,
            xs,
            cout: 64,
            stride: 1,
        };
        let entry = |chosen: &str| TuneEntry {
            chosen: chosen.into(),
            rule: "vec4".into(),
            micros: [(chosen.to_string(), 1.0)].into_iter().collect(),
        };
        for name in key.candidates() {
            let mut t = Tuning::new();
            t.insert(&key, entry(name));
            let p = KernelPolicy::builder()
                .tuning(Some(t))
                .build(&lavapipe, BIG);
            assert_eq!(p.conv1x1(xs, 64, 1).name(), name);
            assert_eq!(p.rule(&key), "vec4");
            // Another shape follows the rules.
            assert_eq!(p.conv1x1(xs, 32, 1), Conv1x1Variant::Vec4);
            assert_eq!(p.asked().len(), 2);
        }
        // A decision naming a variant that cannot run the shape is ignored.
        let mut t = Tuning::new();
        let strided = TuneKey { stride: 2, ..key };
        t.insert(&strided, entry("vec4"));
        let p = KernelPolicy::builder()
            .tuning(Some(t))
            .build(&lavapipe, BIG);
        assert_eq!(p.conv1x1(xs, 64, 2), Conv1x1Variant::Register);
    }
}
