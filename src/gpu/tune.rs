//! Kernel choice by measurement: for each op and shape a model runs, every variant the device
//! supports is timed and the fastest kept ([`tune`], the same code natively and in the
//! browser); the decisions form a [`Tuning`] that a
//! [`KernelPolicyBuilder`](super::KernelPolicyBuilder) takes, and that serialises to JSON for a
//! cache kept by the host (the `activeshift` program: the user's cache directory; the web
//! demo: the browser's `localStorage`).
//!
//! A cache is tied to one adapter and driver and to the kernels it measured: loading one made
//! elsewhere, by other kernels or another format, or one that does not parse, is an error
//! (the caller warns and runs the rules).

use super::kernels::{
    AslConv1x1Args, AslConv1x1Variant, AslForwardVariant, Conv1x1Args, Conv1x1Epilogue,
    Conv1x1Variant,
};
use super::{DispatchTimer, GpuContext, GpuTensor};
use crate::shape::Shape4;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use web_time::Instant;

/// The ops whose kernel is chosen per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TunedOp {
    /// The 1x1 convolution ([`Conv1x1Variant`]).
    Conv1x1,
    /// The ASL forward ([`AslForwardVariant`]).
    AslForward,
    /// The ASL fused into its 1x1 convolution ([`AslConv1x1Variant`]).
    AslConv1x1,
}

impl TunedOp {
    /// A short name (`conv1x1`, `asl_forward`, `asl_conv1x1`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Conv1x1 => "conv1x1",
            Self::AslForward => "asl_forward",
            Self::AslConv1x1 => "asl_conv1x1",
        }
    }
}

/// One op at one shape: the unit a decision is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TuneKey {
    /// The op.
    pub op: TunedOp,
    /// Its input shape.
    pub xs: Shape4,
    /// Output channels (the input's channels for the ASL forward).
    pub cout: usize,
    /// Its stride.
    pub stride: usize,
}

impl TuneKey {
    /// The key as text, e.g. `conv1x1 1x256x7x7->256 s1` (the cache's and the table's form).
    pub fn text(&self) -> String {
        let s = self.xs;
        format!(
            "{} {}x{}x{}x{}->{} s{}",
            self.op.name(),
            s.n,
            s.c,
            s.h,
            s.w,
            self.cout,
            self.stride
        )
    }

    /// The names of the variants that compute this op at this shape.
    pub fn candidates(&self) -> Vec<&'static str> {
        let (xs, stride) = (self.xs, self.stride);
        match self.op {
            TunedOp::Conv1x1 => Conv1x1Variant::ALL
                .iter()
                .filter(|v| v.supports(xs, stride))
                .map(|v| v.name())
                .collect(),
            TunedOp::AslForward => AslForwardVariant::ALL
                .iter()
                .filter(|v| v.supports(xs, stride))
                .map(|v| v.name())
                .collect(),
            TunedOp::AslConv1x1 => AslConv1x1Variant::ALL
                .iter()
                .filter(|v| v.supports(xs, stride))
                .map(|v| v.name())
                .collect(),
        }
    }
}

/// The measurement and decision for one [`TuneKey`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneEntry {
    /// The variant kept (the fastest).
    pub chosen: String,
    /// What the rules pick.
    pub rule: String,
    /// Each candidate's time per run in microseconds (absent: not timed within the budget).
    pub micros: BTreeMap<String, f64>,
}

/// Decisions by measurement, by [`TuneKey::text`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuning {
    entries: BTreeMap<String, TuneEntry>,
}

/// The cache file's format version.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    device: String,
    kernels: String,
    entries: BTreeMap<String, TuneEntry>,
}

/// What a cache is valid for: the adapter, its backend and driver.
pub fn device_id(info: &wgpu::AdapterInfo) -> String {
    format!(
        "{} ({:?}; vendor {:#x}, device {:#x}; driver {} {})",
        info.name, info.backend, info.vendor, info.device, info.driver, info.driver_info
    )
}

/// A fingerprint of the kernels and their variants: a cache measured on other kernels is stale.
fn kernels_id() -> String {
    // FNV-1a over every kernel's source and every variant name.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, src) in super::kernels::SHADERS {
        eat(name.as_bytes());
        eat(src.as_bytes());
    }
    for v in Conv1x1Variant::ALL {
        eat(v.name().as_bytes());
    }
    for v in AslForwardVariant::ALL {
        eat(v.name().as_bytes());
    }
    for v in AslConv1x1Variant::ALL {
        eat(v.name().as_bytes());
    }
    format!("{h:016x}")
}

impl Tuning {
    /// No decision: every op follows the rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every decision, by key text.
    pub fn entries(&self) -> &BTreeMap<String, TuneEntry> {
        &self.entries
    }

    /// Record `entry` for `key`.
    pub fn insert(&mut self, key: &TuneKey, entry: TuneEntry) {
        self.entries.insert(key.text(), entry);
    }

    /// Add every decision of `other` (replacing those for the same keys).
    pub fn merge(&mut self, other: Tuning) {
        self.entries.extend(other.entries);
    }

    /// The variant measured fastest for `key`, if it was tuned.
    pub fn chosen(&self, key: &TuneKey) -> Option<&str> {
        self.entries.get(&key.text()).map(|e| e.chosen.as_str())
    }

    /// The cache text for the adapter `info` describes.
    pub fn to_json(&self, info: &wgpu::AdapterInfo) -> String {
        let file = CacheFile {
            format: FORMAT,
            device: device_id(info),
            kernels: kernels_id(),
            entries: self.entries.clone(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// A cache read back for the adapter `info` describes.
    ///
    /// # Errors
    /// A message saying why the cache cannot be used: it does not parse, has another format,
    /// was measured on another adapter or driver, or on other kernels (stale), or names a
    /// variant that does not exist.
    pub fn from_json(text: &str, info: &wgpu::AdapterInfo) -> std::result::Result<Self, String> {
        let file: CacheFile =
            serde_json::from_str(text).map_err(|e| format!("does not parse ({e})"))?;
        if file.format != FORMAT {
            return Err(format!("format {} (expected {FORMAT})", file.format));
        }
        if file.device != device_id(info) {
            return Err(format!(
                "measured on {}, not on {}",
                file.device,
                device_id(info)
            ));
        }
        if file.kernels != kernels_id() {
            return Err("measured on other kernels (stale)".into());
        }
        for (key, e) in &file.entries {
            if !e.micros.contains_key(&e.chosen) {
                return Err(format!("{key}: chose {:?} without timing it", e.chosen));
            }
        }
        Ok(Self {
            entries: file.entries,
        })
    }
}

/// How long [`tune`] may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TuneBudget {
    /// The time for one op and shape, shared among its candidates: each runs at least once
    /// after its warm-up run, and at most 20 times.
    pub per_key: Duration,
    /// The time for the whole run (None: no limit): once it is spent, the keys not reached
    /// have no decision and follow the rules. A key started is finished.
    pub total: Option<Duration>,
}

impl TuneBudget {
    /// `per_key` for each op and shape, no limit on the whole.
    pub fn per_key(per_key: Duration) -> Self {
        Self {
            per_key,
            total: None,
        }
    }
}

/// Time every candidate ([`KernelPolicy::candidates`](super::KernelPolicy::candidates)) of every
/// key on `ctx` and keep the fastest, within `budget`; the first run of each candidate (which
/// builds its pipeline and packs its weights) is not counted. Inputs are random; the op runs
/// without an epilogue. `progress(i, key)` is called before the `i`-th key is measured.
///
/// Times come from the device's timestamp queries where it has them, else from the wall clock
/// around a submission and its completion ([`DispatchTimer`]); either way they carry the noise
/// of the host. The same code runs natively and in the browser: it waits for the GPU only
/// through futures, so on the web the page's thread is never blocked (the native `activeshift
/// tune` drives it with `pollster`).
///
/// # Errors
/// Any error preparing or running a candidate.
pub async fn tune(
    ctx: &GpuContext,
    keys: &[TuneKey],
    budget: TuneBudget,
    mut progress: impl FnMut(usize, &TuneKey),
) -> crate::Result<Tuning> {
    let timer = DispatchTimer::new(ctx);
    let started = Instant::now();
    let mut tuning = Tuning::new();
    for (i, key) in keys.iter().enumerate() {
        if budget.total.is_some_and(|total| started.elapsed() >= total) {
            break;
        }
        progress(i, key);
        tuning.insert(key, measure(ctx, &timer, key, budget.per_key).await?);
    }
    Ok(tuning)
}

/// Random values in [-1, 1) from a fixed seed.
fn random(seed: &mut u32, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 17;
            *seed ^= *seed << 5;
            (*seed as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Time each candidate of `key` within `budget` and keep the fastest.
async fn measure(
    ctx: &GpuContext,
    timer: &DispatchTimer,
    key: &TuneKey,
    budget: Duration,
) -> crate::Result<TuneEntry> {
    let (xs, cout, s) = (key.xs, key.cout, key.stride);
    let ys = xs.strided(cout, s);
    let mut seed = 0x2545_f491_u32;
    let x = GpuTensor::from_slice(ctx, &xs.dims(), &random(&mut seed, xs.len()))?;
    let shifts: Vec<f32> = random(&mut seed, 2 * xs.c)
        .iter()
        .map(|v| v * 3.0)
        .collect();
    let shift = GpuTensor::from_slice(ctx, &[2, xs.c], &shifts)?;
    let weight = GpuTensor::from_slice(ctx, &[cout, xs.c], &random(&mut seed, cout * xs.c))?;
    let y = GpuTensor::zeros(ctx, &ys.dims())?;
    let candidates = ctx.policy().candidates(key);
    let per_candidate = budget / candidates.len().max(1) as u32;
    let mut micros = BTreeMap::new();
    for name in &candidates {
        let k = ctx.kernels();
        let epilogue = Conv1x1Epilogue::default();
        let dispatch = match key.op {
            TunedOp::Conv1x1 => {
                let v = Conv1x1Variant::ALL
                    .into_iter()
                    .find(|v| v.name() == *name)
                    .unwrap_or(Conv1x1Variant::Tiled);
                let args = Conv1x1Args {
                    x: &x,
                    weight: &weight,
                    stride: s,
                    epilogue,
                    y: &y,
                };
                k.conv1x1().prepare_variant(v, ctx, args)?
            }
            TunedOp::AslForward => {
                let v = AslForwardVariant::ALL
                    .into_iter()
                    .find(|v| v.name() == *name)
                    .unwrap_or(AslForwardVariant::Scalar);
                k.asl_forward().prepare_variant(v, ctx, &x, &shift, s, &y)?
            }
            TunedOp::AslConv1x1 => {
                let v = AslConv1x1Variant::ALL
                    .into_iter()
                    .find(|v| v.name() == *name)
                    .unwrap_or(AslConv1x1Variant::Tiled);
                let args = AslConv1x1Args {
                    x: &x,
                    shift: &shift,
                    stride: s,
                    weight: &weight,
                    epilogue,
                    y: &y,
                };
                k.asl_conv1x1().prepare_variant(v, ctx, args)?
            }
        };
        let (setup, main) = dispatch.split_setup();
        // Setup (weight packing) and the first run (pipeline creation) are not counted.
        timer.run(&setup.then(main.clone())).await?;
        let started = Instant::now();
        let mut best = f64::INFINITY;
        for _ in 0..20 {
            best = best.min(timer.time(&main).await?);
            if started.elapsed() >= per_candidate {
                break;
            }
        }
        micros.insert(name.to_string(), best * 1e3);
    }
    let chosen = micros
        .iter()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    Ok(TuneEntry {
        chosen,
        rule: ctx.policy().rule(key).to_string(),
        micros,
    })
}

/// [`tune`] with no progress report, blocking the calling thread (native only).
///
/// # Errors
/// As [`tune`].
#[cfg(not(target_arch = "wasm32"))]
pub fn tune_blocking(
    ctx: &GpuContext,
    keys: &[TuneKey],
    budget: TuneBudget,
) -> crate::Result<Tuning> {
    pollster::block_on(tune(ctx, keys, budget, |_, _| {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> wgpu::AdapterInfo {
        let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan);
        info.name = name.into();
        info
    }

    fn sample() -> Tuning {
        let key = TuneKey {
            op: TunedOp::Conv1x1,
            xs: Shape4::new(1, 256, 7, 7),
            cout: 256,
            stride: 1,
        };
        let mut t = Tuning::new();
        t.insert(
            &key,
            TuneEntry {
                chosen: "vec4_whole".into(),
                rule: "vec4_whole".into(),
                micros: [
                    ("vec4".to_string(), 900.0),
                    ("vec4_whole".to_string(), 610.0),
                ]
                .into_iter()
                .collect(),
            },
        );
        t
    }

    #[test]
    fn the_cache_round_trips() {
        let t = sample();
        let json = t.to_json(&info("llvmpipe"));
        assert_eq!(Tuning::from_json(&json, &info("llvmpipe")), Ok(t));
    }

    #[test]
    fn a_corrupt_or_stale_cache_is_refused_with_a_reason() {
        let json = sample().to_json(&info("llvmpipe"));
        // Another adapter.
        let err = Tuning::from_json(&json, &info("other")).unwrap_err();
        assert!(err.contains("measured on"), "{err}");
        // Truncated, or not JSON at all.
        let err = Tuning::from_json(&json[..json.len() / 2], &info("llvmpipe")).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
        assert!(Tuning::from_json("\u{0}garbage", &info("llvmpipe")).is_err());
        // Other kernels (stale), another format, a choice that was never timed.
        let stale = json.replace(&kernels_id(), "0000000000000000");
        assert_ne!(stale, json);
        let err = Tuning::from_json(&stale, &info("llvmpipe")).unwrap_err();
        assert!(err.contains("stale"), "{err}");
        let other = json.replace("\"format\": 1", "\"format\": 99");
        assert!(Tuning::from_json(&other, &info("llvmpipe")).is_err());
        let untimed = json.replace("\"chosen\": \"vec4_whole\"", "\"chosen\": \"tiled\"");
        assert_ne!(untimed, json);
        assert!(Tuning::from_json(&untimed, &info("llvmpipe")).is_err());
    }
}
