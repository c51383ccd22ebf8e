//! The 1x1 GEMM variants and the fused ASL + 1x1 GEMM against their CPU twins (evaluated in
//! f64 from the same f32 inputs), on fresh random inputs: odd sizes that are no multiple of any
//! tile, more than one K chunk (Cin > 512), output channels past a row block, stride 1, 2 and
//! 3, shifts beyond the border and NaN shifts, every epilogue; outputs poisoned before each
//! kernel runs. Also: the fused kernel equals the unfused ASL + GEMM on the GPU.

use crate::common;

use activeshift::gpu::kernels::{
    ASL_CONV1X1_MAX_CHANNELS, AslConv1x1Args, AslConv1x1Variant, Conv1x1, Conv1x1Args,
    Conv1x1Epilogue, Conv1x1Variant,
};
use activeshift::{GpuContext, GpuTensor, Shape4, cpu};
use common::*;
use rand::rngs::StdRng;

const TOL: f64 = 1e-4;

/// (input shape, output channels), with Cin around the 4-channel groups and the 512-channel
/// chunks (512 input channels for 32 output channels per invocation, 256 for 64), Cout
/// around the 32- and 64-row blocks, planes with and without a multiple of 4 pixels.
fn gemm_shapes() -> Vec<(Shape4, usize)> {
    vec![
        (Shape4::new(1, 1, 1, 1), 1),
        (Shape4::new(2, 3, 5, 7), 5),
        (Shape4::new(1, 17, 13, 13), 33),
        (Shape4::new(2, 32, 8, 12), 32),
        (Shape4::new(1, 33, 7, 7), 70),
        (Shape4::new(3, 6, 4, 9), 65),
        (Shape4::new(1, 515, 3, 4), 19),
        (Shape4::new(1, 1030, 2, 2), 35),
        (Shape4::new(2, 7, 5, 16), 9),
        (Shape4::new(1, 9, 6, 8), 66),
        (Shape4::new(1, 300, 2, 4), 64),
        (Shape4::new(2, 260, 3, 5), 130),
    ]
}

struct Case {
    x: Vec<f32>,
    w: Vec<f32>,
    scale: Vec<f32>,
    bias: Vec<f32>,
}

impl Case {
    fn new(rng: &mut StdRng, xs: Shape4, cout: usize) -> Self {
        Self {
            x: uniform(rng, xs.len(), -1.0, 1.0),
            w: uniform(rng, cout * xs.c, -1.0, 1.0),
            scale: uniform(rng, cout, -2.0, 2.0),
            bias: uniform(rng, cout, -1.0, 1.0),
        }
    }
}

/// Epilogue `e` of the 8 combinations (bit 0 affine, bit 1 residual, bit 2 ReLU).
fn cpu_epilogue<'a>(
    e: u32,
    scale: &'a [f64],
    bias: &'a [f64],
    residual: &'a [f64],
) -> cpu::Epilogue<'a, f64> {
    cpu::Epilogue {
        affine: (e & 1 != 0).then_some((scale, bias)),
        residual: (e & 2 != 0).then_some(residual),
        relu: e & 4 != 0,
    }
}

fn gpu_epilogue<'a>(
    e: u32,
    scale: &'a GpuTensor,
    bias: &'a GpuTensor,
    residual: &'a GpuTensor,
) -> Conv1x1Epilogue<'a> {
    Conv1x1Epilogue {
        affine: (e & 1 != 0).then_some((scale, bias)),
        residual: (e & 2 != 0).then_some(residual),
        relu: e & 4 != 0,
        input_affine_relu: None,
    }
}

fn run(ctx: &GpuContext, f: impl FnOnce(&mut wgpu::CommandEncoder) -> activeshift::Result<()>) {
    ctx.submit(f).expect("submit");
}

#[test]
fn every_gemm_variant_matches_cpu_on_odd_shapes() {
    let Some(ctx) = gpu("every_gemm_variant_matches_cpu_on_odd_shapes") else {
        return;
    };
    let (mut rng, seed) = rng("gemm variants");
    let conv = ctx.kernels().conv1x1();
    // The register-tiled GEMMs' 64-row entry points too (off by default).
    let wide_ctx = ctx
        .clone()
        .with_policy(ctx.policy_overrides().clone().wide_gemm(Some(true)));
    let mut ran = std::collections::HashSet::new();
    for (xs, cout) in gemm_shapes() {
        let c = Case::new(&mut rng, xs, cout);
        let xt = upload(ctx, &xs.dims(), &c.x);
        let wt = upload(ctx, &[cout, xs.c], &c.w);
        let st = upload(ctx, &[cout], &c.scale);
        let bt = upload(ctx, &[cout], &c.bias);
        // The input affine + ReLU (epilogue bit 8), per input channel.
        let in_scale = uniform(&mut rng, xs.c, -1.5, 1.5);
        let in_bias = uniform(&mut rng, xs.c, -0.5, 0.5);
        let (ist, ibt) = (
            upload(ctx, &[xs.c], &in_scale),
            upload(ctx, &[xs.c], &in_bias),
        );
        let x_in = cpu::affine(&f64s(&c.x), xs, &f64s(&in_scale), &f64s(&in_bias), true)
            .expect("cpu affine");
        for s in [1, 2, 3] {
            let ys = xs.strided(cout, s);
            let res = uniform(&mut rng, ys.len(), -1.0, 1.0);
            let rt = upload(ctx, &ys.dims(), &res);
            let (x64, w64, s64, b64, r64) = (
                f64s(&c.x),
                f64s(&c.w),
                f64s(&c.scale),
                f64s(&c.bias),
                f64s(&res),
            );
            for e in [0, 1, 2, 4, 7, 8, 15] {
                let x_used = if e & 8 != 0 { &x_in } else { &x64 };
                let want =
                    cpu::conv1x1(x_used, xs, &w64, cout, s, cpu_epilogue(e, &s64, &b64, &r64))
                        .expect("cpu conv1x1");
                let want = f32s(&want);
                let widths: &[&GpuContext] = if cout >= 64 && e == 15 {
                    &[ctx, &wide_ctx]
                } else {
                    &[ctx]
                };
                for (v, ctx) in Conv1x1Variant::ALL
                    .into_iter()
                    .flat_map(|v| widths.iter().map(move |c| (v, *c)))
                {
                    if !v.supports(xs, s) {
                        continue;
                    }
                    ran.insert(v);
                    let y = poisoned(ctx, &ys.dims());
                    let ep = Conv1x1Epilogue {
                        input_affine_relu: (e & 8 != 0).then_some((&ist, &ibt)),
                        ..gpu_epilogue(e, &st, &bt, &rt)
                    };
                    run(ctx, |enc| {
                        let args = Conv1x1Args {
                            x: &xt,
                            weight: &wt,
                            stride: s,
                            epilogue: ep,
                            y: &y,
                        };
                        conv.prepare_variant(v, ctx, args).map(|d| d.record(enc))
                    });
                    let got = read(ctx, &y);
                    let err = rel_err(&got, &want);
                    assert!(
                        err <= TOL,
                        "conv1x1 {} on {xs} -> {cout}, stride {s}, epilogue {e}: relative error \
                         {err:e} (seed {seed})",
                        v.name()
                    );
                }
            }
        }
    }
    assert_eq!(ran.len(), Conv1x1Variant::ALL.len(), "every variant ran");
}

#[test]
fn the_chosen_variant_handles_every_shape() {
    let Some(ctx) = gpu("the_chosen_variant_handles_every_shape") else {
        return;
    };
    let (mut rng, seed) = rng("gemm chosen");
    let conv = ctx.kernels().conv1x1();
    for (xs, cout) in gemm_shapes() {
        for s in [1, 2] {
            let c = Case::new(&mut rng, xs, cout);
            let xt = upload(ctx, &xs.dims(), &c.x);
            let wt = upload(ctx, &[cout, xs.c], &c.w);
            let y = poisoned(ctx, &xs.strided(cout, s).dims());
            run(ctx, |enc| {
                conv.prepare(ctx, &xt, &wt, s, Conv1x1Epilogue::default(), &y)
                    .map(|d| d.record(enc))
            });
            let want = cpu::conv1x1(&f64s(&c.x), xs, &f64s(&c.w), cout, s, Default::default())
                .expect("cpu conv1x1");
            let err = rel_err(&read(ctx, &y), &f32s(&want));
            assert!(
                err <= TOL,
                "conv1x1 on {xs} stride {s}: {err:e} (seed {seed})"
            );
        }
    }
}

/// Shifts for `c` channels within ±reach, with a few exact integers, and NaN in channel 1
/// when `nan` (x and y alternately).
fn shifts(rng: &mut StdRng, c: usize, reach: f32, nan: bool) -> Vec<f32> {
    let mut s = uniform(rng, 2 * c, -reach, reach);
    for (i, v) in s.iter_mut().enumerate() {
        if i % 5 == 3 {
            *v = v.round();
        }
    }
    if nan && c > 1 {
        s[1] = f32::NAN;
        if c > 2 {
            s[c + 2] = f32::NAN;
        }
    }
    s
}

#[test]
fn fused_asl_gemm_matches_cpu_and_the_unfused_path() {
    let Some(ctx) = gpu("fused_asl_gemm_matches_cpu_and_the_unfused_path") else {
        return;
    };
    let (mut rng, seed) = rng("asl_conv1x1");
    let mut ran = std::collections::HashSet::new();
    let k = ctx.kernels();
    for (xs, cout) in gemm_shapes() {
        let c = Case::new(&mut rng, xs, cout);
        let xt = upload(ctx, &xs.dims(), &c.x);
        let wt = upload(ctx, &[cout, xs.c], &c.w);
        let st = upload(ctx, &[cout], &c.scale);
        let bt = upload(ctx, &[cout], &c.bias);
        for s in [1, 2, 3] {
            let reach = xs.h.max(xs.w) as f32 + 2.0;
            let shift = shifts(&mut rng, xs.c, reach, s <= 2);
            let sht = upload(ctx, &[2, xs.c], &shift);
            let ys = xs.strided(cout, s);
            let res = uniform(&mut rng, ys.len(), -1.0, 1.0);
            let rt = upload(ctx, &ys.dims(), &res);
            let (x64, w64, s64, b64, r64, sh64) = (
                f64s(&c.x),
                f64s(&c.w),
                f64s(&c.scale),
                f64s(&c.bias),
                f64s(&res),
                f64s(&shift),
            );
            for e in [0, 3, 4, 7] {
                let want =
                    cpu::asl_conv1x1(&x64, xs, &sh64, s, &w64, cpu_epilogue(e, &s64, &b64, &r64))
                        .expect("cpu asl_conv1x1");
                let want = f32s(&want);
                let ep = gpu_epilogue(e, &st, &bt, &rt);
                let msg = format!("{xs} -> {cout}, stride {s}, epilogue {e} (seed {seed})");
                // Every variant that handles the shape; the last one is compared with the
                // unfused path below.
                let mut fused = Vec::new();
                for v in AslConv1x1Variant::ALL {
                    if !v.supports(xs, s) {
                        continue;
                    }
                    let out = poisoned(ctx, &ys.dims());
                    run(ctx, |enc| {
                        k.asl_conv1x1()
                            .prepare_variant(v, ctx, asl_args(&xt, &sht, s, &wt, ep, &out))
                            .map(|d| d.record(enc))
                    });
                    fused = read(ctx, &out);
                    let err = rel_err(&fused, &want);
                    assert!(err <= TOL, "fused ({}) vs cpu on {msg}: {err:e}", v.name());
                    ran.insert(v);
                }
                // The unfused GPU path: ASL into a tensor, then the chosen GEMM.
                let shifted = poisoned(ctx, &xs.strided(xs.c, s).dims());
                let unfused = poisoned(ctx, &ys.dims());
                run(ctx, |enc| {
                    k.asl_forward()
                        .prepare(ctx, &xt, &sht, s, &shifted)?
                        .then(k.conv1x1().prepare(ctx, &shifted, &wt, 1, ep, &unfused)?)
                        .record(enc);
                    Ok(())
                });
                let err = rel_err(&fused, &read(ctx, &unfused));
                assert!(err <= TOL, "fused vs unfused on {msg}: {err:e}");
            }
        }
    }
    assert_eq!(
        ran.len(),
        AslConv1x1Variant::ALL.len(),
        "every fused variant ran"
    );
}

/// The operands of the fused ASL + GEMM.
fn asl_args<'a>(
    x: &'a GpuTensor,
    shift: &'a GpuTensor,
    stride: usize,
    weight: &'a GpuTensor,
    epilogue: Conv1x1Epilogue<'a>,
    y: &'a GpuTensor,
) -> AslConv1x1Args<'a> {
    AslConv1x1Args {
        x,
        shift,
        stride,
        weight,
        epilogue,
        y,
    }
}

#[test]
fn fused_asl_gemm_rejects_bad_shapes() {
    let Some(ctx) = gpu("fused_asl_gemm_rejects_bad_shapes") else {
        return;
    };
    let k = ctx.kernels().asl_conv1x1();
    let x = upload(ctx, &[1, 4, 5, 5], &[0.0; 100]);
    let w = upload(ctx, &[3, 4], &[0.0; 12]);
    let bad_w = upload(ctx, &[3, 5], &[0.0; 15]);
    let shift = upload(ctx, &[2, 4], &[0.0; 8]);
    let bad_shift = upload(ctx, &[2, 3], &[0.0; 6]);
    let y = poisoned(ctx, &[1, 3, 3, 3]);
    let ep = Conv1x1Epilogue::default();
    assert!(k.prepare(ctx, asl_args(&x, &shift, 2, &w, ep, &y)).is_ok());
    for v in [AslConv1x1Variant::Register, AslConv1x1Variant::Tiled] {
        let p = |x, shift, s, w, y| k.prepare_variant(v, ctx, asl_args(x, shift, s, w, ep, y));
        assert!(p(&x, &shift, 2, &w, &y).is_ok());
        assert!(p(&x, &shift, 0, &w, &y).is_err());
        assert!(p(&x, &shift, 1, &w, &y).is_err());
        assert!(p(&x, &bad_shift, 2, &w, &y).is_err());
        assert!(p(&x, &shift, 2, &bad_w, &y).is_err());
        assert!(p(&x, &shift, 2, &w, &x).is_err());
    }
    // The input affine is the 1x1 convolution's alone; it must match the input channels.
    let (s4, s5) = (upload(ctx, &[4], &[1.0; 4]), upload(ctx, &[5], &[1.0; 5]));
    let with_input = Conv1x1Epilogue {
        input_affine_relu: Some((&s4, &s4)),
        ..ep
    };
    let fused = k.prepare(ctx, asl_args(&x, &shift, 2, &w, with_input, &y));
    assert!(matches!(
        fused,
        Err(activeshift::Error::InvalidArgument { .. })
    ));
    let conv = ctx.kernels().conv1x1();
    assert!(conv.prepare(ctx, &x, &w, 2, with_input, &y).is_ok());
    let wrong = Conv1x1Epilogue {
        input_affine_relu: Some((&s5, &s4)),
        ..ep
    };
    assert!(matches!(
        conv.prepare(ctx, &x, &w, 2, wrong, &y),
        Err(activeshift::Error::Shape { .. })
    ));
    // Odd width at stride 1: no vec4 pipeline.
    let y1 = poisoned(ctx, &[1, 3, 5, 5]);
    let args = asl_args(&x, &shift, 1, &w, ep, &y1);
    let vec4 = k.prepare_variant(AslConv1x1Variant::Vec4, ctx, args);
    assert!(matches!(
        vec4,
        Err(activeshift::Error::InvalidArgument { .. })
    ));
    // Past the taps slab of the register-tiled variants, the tiled one still runs.
    let c = ASL_CONV1X1_MAX_CHANNELS + 1;
    let (xw, ww, sw) = (
        upload(ctx, &[1, c, 1, 1], &vec![0.5; c]),
        upload(ctx, &[1, c], &vec![1.0; c]),
        upload(ctx, &[2, c], &vec![0.0; 2 * c]),
    );
    let yw = poisoned(ctx, &[1, 1, 1, 1]);
    let wide = asl_args(&xw, &sw, 1, &ww, ep, &yw);
    let reg = k.prepare_variant(AslConv1x1Variant::Register, ctx, wide);
    assert!(matches!(reg, Err(activeshift::Error::DeviceLimit { .. })));
    run(ctx, |enc| {
        k.prepare_variant(AslConv1x1Variant::Tiled, ctx, wide)
            .map(|d| d.record(enc))
    });
    assert_eq!(read(ctx, &yw), vec![0.5 * c as f32]);
}

/// The ASL forward's vectorised pipeline (stride 1, W divisible by 4) against the CPU twin:
/// shifts beyond the border, exact integers, NaN and infinite shifts.
#[test]
fn vectorised_asl_forward_matches_cpu() {
    let Some(ctx) = gpu("vectorised_asl_forward_matches_cpu") else {
        return;
    };
    let (mut rng, seed) = rng("asl_forward vec4");
    for xs in [
        Shape4::new(1, 5, 1, 4),
        Shape4::new(2, 7, 5, 16),
        Shape4::new(1, 3, 28, 28),
        Shape4::new(1, 9, 3, 8),
    ] {
        let reach = xs.h.max(xs.w) as f32 + 2.0;
        let mut shift = shifts(&mut rng, xs.c, reach, true);
        shift[0] = f32::INFINITY;
        let x = uniform(&mut rng, xs.len(), -1.0, 1.0);
        let want = cpu::asl_forward(&f64s(&x), xs, &f64s(&shift), 1).expect("cpu asl");
        let xt = upload(ctx, &xs.dims(), &x);
        let st = upload(ctx, &[2, xs.c], &shift);
        let out = poisoned(ctx, &xs.dims());
        run(ctx, |enc| {
            ctx.kernels()
                .asl_forward()
                .prepare(ctx, &xt, &st, 1, &out)
                .map(|d| d.record(enc))
        });
        let err = rel_err(&read(ctx, &out), &f32s(&want));
        assert!(err <= TOL, "asl_forward {xs}: {err:e} (seed {seed})");
    }
}

/// The kernel choice reported by `activeshift info` and the web demo follows the rules: on
/// lavapipe (a native CPU adapter) the register-tiled GEMMs, the row-sliding ASL, unfused.
#[test]
fn kernel_choice_follows_the_adapter() {
    let Some(ctx) = gpu("kernel_choice_follows_the_adapter") else {
        return;
    };
    use activeshift::gpu::KernelPolicy;
    use activeshift::gpu::kernels::KernelChoice;
    let k = KernelChoice::of(ctx);
    assert_eq!(k.register_tiled, ctx.policy().register_tiled());
    // A context can ask for either family on any adapter.
    use activeshift::gpu::KernelFamily;
    for (family, packed) in [(KernelFamily::Cpu, true), (KernelFamily::Gpu, false)] {
        let c = ctx.clone().with_kernel_family(Some(family));
        assert_eq!(c.kernel_family(), family);
        assert_eq!(KernelChoice::of(&c).register_tiled, packed);
    }
    assert_eq!(k.fused, ctx.policy().fused_by_default());
    // Overrides given to the builder win over the adapter's rules, and keep each other.
    let c = ctx
        .clone()
        .with_policy(KernelPolicy::builder().fused(Some(true)))
        .with_kernel_family(Some(KernelFamily::Cpu));
    assert!(c.policy().fused_by_default() && c.policy().register_tiled());
    let c = c.with_policy(KernelPolicy::builder().fused(Some(false)));
    assert!(!c.policy().fused_by_default());
    // lavapipe is the CPU adapter these tests run on natively (SwiftShader runs in Chromium).
    let lavapipe = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
    if lavapipe && *ctx.policy_overrides() == KernelPolicy::builder() {
        assert_eq!(
            k.to_string(),
            "register-tiled GEMM, rows ASL, then the GEMM"
        );
    }
    if lavapipe {
        // Measured on lavapipe (BENCHMARKS.md): one dispatch over storage-buffer weights for
        // w32's 7x7 layers (four slab dispatches of one workgroup each otherwise), the slab
        // GEMMs where every slab dispatch has work for both cores.
        let cpu = ctx.clone().with_kernel_family(Some(KernelFamily::Cpu));
        let pick = |xs, cout, s| Conv1x1::choose(cpu.policy(), xs, cout, s);
        assert_eq!(
            pick(Shape4::new(1, 256, 7, 7), 256, 1),
            Conv1x1Variant::RegisterWhole
        );
        assert_eq!(
            pick(Shape4::new(1, 128, 14, 14), 256, 2),
            Conv1x1Variant::RegisterWhole
        );
        assert_eq!(
            pick(Shape4::new(1, 512, 2, 2), 1000, 1),
            Conv1x1Variant::Vec4Whole
        );
        assert_eq!(
            pick(Shape4::new(1, 64, 224, 224), 64, 1),
            Conv1x1Variant::Vec4
        );
        assert_eq!(
            pick(Shape4::new(1, 1024, 32, 32), 1024, 1),
            Conv1x1Variant::Vec4
        );
        assert_eq!(
            pick(Shape4::new(1, 128, 14, 14), 128, 1),
            Conv1x1Variant::Vec4
        );
    }
}

/// `gpu::tune::tune` times every candidate a device supports for each op and shape, keeps the
/// fastest, and a policy given the result runs it (odd sizes, stride 2).
#[test]
fn tuning_times_every_candidate_and_the_policy_runs_the_fastest() {
    let Some(ctx) = gpu("tuning_times_every_candidate_and_the_policy_runs_the_fastest") else {
        return;
    };
    use activeshift::gpu::kernels::{AslConv1x1, AslForward};
    use activeshift::gpu::tune::{TuneBudget, TuneKey, TunedOp, tune_blocking};
    let keys = [
        TuneKey {
            op: TunedOp::Conv1x1,
            xs: Shape4::new(1, 20, 9, 8),
            cout: 70,
            stride: 1,
        },
        TuneKey {
            op: TunedOp::Conv1x1,
            xs: Shape4::new(2, 13, 11, 7),
            cout: 9,
            stride: 2,
        },
        TuneKey {
            op: TunedOp::AslForward,
            xs: Shape4::new(1, 8, 6, 8),
            cout: 8,
            stride: 1,
        },
        TuneKey {
            op: TunedOp::AslConv1x1,
            xs: Shape4::new(1, 8, 7, 9),
            cout: 12,
            stride: 2,
        },
    ];
    let budget = TuneBudget::per_key(std::time::Duration::from_millis(30));
    let t = tune_blocking(ctx, &keys, budget).unwrap();
    assert_eq!(t.entries().len(), keys.len());
    // The async form (what the browser runs) reports each key; a spent total budget stops it.
    let mut seen = Vec::new();
    let first = pollster::block_on(activeshift::gpu::tune::tune(
        ctx,
        &keys[..2],
        budget,
        |i, k| seen.push((i, k.text())),
    ))
    .unwrap();
    assert_eq!(first.entries().len(), 2);
    assert_eq!(seen, vec![(0, keys[0].text()), (1, keys[1].text())]);
    let none = TuneBudget {
        total: Some(std::time::Duration::ZERO),
        ..budget
    };
    assert!(
        tune_blocking(ctx, &keys, none)
            .unwrap()
            .entries()
            .is_empty()
    );
    let tuned = ctx
        .clone()
        .with_policy(ctx.policy_overrides().clone().tuning(Some(t.clone())));
    for key in &keys {
        let e = &t.entries()[&key.text()];
        let mut timed: Vec<&str> = e.micros.keys().map(String::as_str).collect();
        let mut candidates = ctx.policy().candidates(key);
        timed.sort();
        candidates.sort();
        assert_eq!(timed, candidates, "{}", key.text());
        assert!(e.micros.values().all(|us| us.is_finite() && *us > 0.0));
        let fastest = e.micros.values().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(e.micros[&e.chosen], fastest, "{}", key.text());
        assert_eq!(e.rule, ctx.policy().rule(key));
        let (xs, cout, s) = (key.xs, key.cout, key.stride);
        let picked = match key.op {
            TunedOp::Conv1x1 => Conv1x1::choose(tuned.policy(), xs, cout, s).name(),
            TunedOp::AslForward => AslForward::choose(tuned.policy(), xs, s).name(),
            TunedOp::AslConv1x1 => AslConv1x1::choose(tuned.policy(), xs, cout, s).name(),
        };
        assert_eq!(picked, e.chosen, "{}", key.text());
    }
}
