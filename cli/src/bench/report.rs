//! The reports of `activeshift bench`: the terminal table, the JSON document, the Markdown for
//! BENCHMARKS.md and the bars of its picture.

use super::*;

/// The bars of the picture: the paper's Table 1 block on this adapter, and the AS-ResNets at
/// batch 1 (ours on this adapter and the CPU engine, the paper's Caffe numbers).
pub(super) fn chart_groups(b: &Bench) -> Vec<crate::plot::BarGroup> {
    use plotters::style::RGBColor;
    let (grey, red, orange, blue, green, purple) = (
        RGBColor(120, 120, 120),
        RGBColor(200, 50, 40),
        RGBColor(240, 150, 30),
        RGBColor(40, 90, 200),
        RGBColor(40, 150, 70),
        RGBColor(130, 70, 170),
    );
    let mut blocks = Vec::new();
    let fused_note = format!(
        " ({})",
        AslConv1x1::choose(b.ctx.policy(), LAYER, LAYER.c, 1).name()
    );
    for (case, label, colour) in [
        ("conv1x1_plain", "1x1 conv alone".to_string(), grey),
        (
            "asl_block_unfused",
            "ASL kernel, then the 1x1".to_string(),
            red,
        ),
        (
            "asl_block_fused",
            format!("ASL fused into the 1x1{fused_note}"),
            orange,
        ),
        (
            "dw3x3_block",
            "3x3 depthwise, then the 1x1".to_string(),
            blue,
        ),
    ] {
        if let Some(s) = b.find(case) {
            blocks.push((label, s.median(), colour));
        }
    }
    let mut nets = Vec::new();
    for (name, short, paper_cpu, paper_gpu) in [
        ("as-resnet-w32", "w32", 18.7, 5.37),
        ("as-resnet-w50", "w50", 32.1, 6.14),
        ("as-resnet-w68", "w68", 47.9, 6.73),
    ] {
        if let Some(s) = b.find(&format!("e2e_gpu_{name}_b1")) {
            nets.push((format!("{short} ours, this adapter"), s.median(), red));
        }
        if let Some(s) = b.find(&format!("e2e_cpu_{name}_b1")) {
            nets.push((format!("{short} ours, CPU engine"), s.median(), green));
        }
        nets.push((format!("{short} paper, Titan X"), paper_gpu, purple));
        nets.push((format!("{short} paper, i7 1 thread"), paper_cpu, grey));
    }
    vec![
        (
            "Paper Table 1 block: 64 channels at 224², batch 1".to_string(),
            blocks,
        ),
        ("AS-ResNet at 224², batch 1".to_string(), nets),
    ]
}

fn timing_method(b: &Bench) -> &'static str {
    if b.timer.uses_timestamps() {
        "GPU timestamp queries around the compute pass (kernels; weight packing and shift taps run once beforehand, as in inference); wall clock (end-to-end, CPU)"
    } else {
        "wall clock around submit + wait (kernels; weight packing and shift taps run once beforehand, as in inference); wall clock (end-to-end, CPU)"
    }
}

pub(super) fn report_json(b: &Bench, seconds: f64) -> Value {
    let info = b.ctx.adapter_info();
    let cases: Vec<Value> = b
        .samples
        .iter()
        .map(|s| {
            let rate = s.rate();
            json!({
                "name": s.name,
                "group": s.group,
                "median_ms": s.median(),
                "min_ms": s.min(),
                "max_ms": s.max(),
                "runs": s.ms.len(),
                "throughput": rate.as_ref().map(|r| r.0),
                "throughput_unit": rate.as_ref().map(|r| r.1.clone()),
                "note": s.note,
            })
        })
        .collect();
    let mut ratio_obj = serde_json::Map::new();
    for r in ratios(b) {
        ratio_obj.insert(
            r.name.to_string(),
            json!({ "value": r.value, "goal": r.goal, "met": r.met, "what": r.what }),
        );
    }
    json!({
        "adapter": info.name,
        "backend": format!("{:?}", info.backend),
        "device_type": format!("{:?}", info.device_type),
        "driver": info.driver,
        "driver_info": info.driver_info,
        "timing": timing_method(b),
        "quick": b.quick,
        "seconds": seconds,
        "cases": cases,
        "ratios": Value::Object(ratio_obj),
        "layers": b.layers.as_ref().map(|l| json!({
            "model": l.model,
            "batch": 1,
            "total_ms": l.total(),
            "kinds": l.kinds().iter().map(|(k, ms, n)| json!({"kind": k, "ms": ms, "ops": n})).collect::<Vec<_>>(),
            "ops": l.ops.iter().map(|(k, label, ms)| json!({"kind": k, "label": label, "ms": ms})).collect::<Vec<_>>(),
        })),
    })
}

/// The "Where the time goes" section: per kind, then the slowest ops.
fn layers_markdown(l: &LayerProfile, gpu_e2e: Option<f64>) -> String {
    let total = l.total();
    let mut out = format!(
        "\n## Where the time goes: {}, batch 1\n\nEvery op's launches timed on their own on this \
         adapter (median of a few runs), as `GpuModel::op_dispatches` lists them: {:.1} ms in all{}.\n\n\
         | kind | ops | ms | share |\n|---|---|---|---|\n",
        l.model,
        total,
        gpu_e2e.map_or(String::new(), |e| format!(
            " (the whole forward pass, with upload, one submission and readback: {e:.1} ms)"
        )),
    );
    for (kind, ms, n) in l.kinds() {
        out.push_str(&format!(
            "| {kind} | {n} | {ms:.2} | {:.0}% |\n",
            100.0 * ms / total.max(1e-9)
        ));
    }
    let mut slow: Vec<&(&str, String, f64)> = l.ops.iter().collect();
    slow.sort_by(|a, b| b.2.total_cmp(&a.2));
    out.push_str("\nThe slowest ops:\n\n| op | kind | ms |\n|---|---|---|\n");
    for (kind, label, ms) in slow.into_iter().take(8) {
        out.push_str(&format!("| {label} | {kind} | {ms:.2} |\n"));
    }
    out
}

fn fmt_rate(s: &Sample) -> String {
    s.rate()
        .map(|(v, u)| format!("{v:.2} {u}"))
        .unwrap_or_default()
}

pub(super) fn table(b: &Bench) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "adapter: {}\ntiming: {}\n\n",
        b.ctx.describe(),
        timing_method(b)
    ));
    out.push_str(&format!(
        "{:<36} {:>11} {:>23} {:>18}  {}\n",
        "case", "median ms", "spread (min..max) ms", "throughput", "what"
    ));
    for s in &b.samples {
        out.push_str(&format!(
            "{:<36} {:>11.3} {:>23} {:>18}  {}\n",
            s.name,
            s.median(),
            format!("{:.3}..{:.3}", s.min(), s.max()),
            fmt_rate(s),
            s.note
        ));
    }
    out.push_str("\nratios:\n");
    for r in ratios(b) {
        let v = r.value.map_or("n/a".into(), |v| format!("{v:.3}"));
        let met = match r.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        out.push_str(&format!(
            "  {:<26} {:>8}  goal {:<8} {:<8} ({})\n",
            r.name, v, r.goal, met, r.what
        ));
    }
    if let Some(l) = &b.layers {
        out.push_str(&format!(
            "\nwhere the time goes ({}, batch 1, ops timed one by one: {:.1} ms):\n",
            l.model,
            l.total()
        ));
        for (kind, ms, n) in l.kinds() {
            out.push_str(&format!("  {kind:<26} {n:>3} ops {ms:>10.2} ms\n"));
        }
    }
    out
}

/// The paper's numbers (docs/design.md §5) beside ours, where comparable.
fn paper_rows(b: &Bench) -> String {
    let med = |n: &str| {
        b.find(n)
            .map_or("n/a".to_string(), |s| format!("{:.1}", s.median()))
    };
    let mut out = String::new();
    out.push_str("| model | paper CPU ms (i7, 1 thread, Caffe) | paper GPU ms (Titan X, Caffe) | ours GPU ms (this adapter, batch 1) | ours CPU engine ms (batch 1, all threads) |\n|---|---|---|---|---|\n");
    for (name, cpu, gpu) in [
        ("as-resnet-w32", "18.7", "5.37"),
        ("as-resnet-w50", "32.1", "6.14"),
        ("as-resnet-w68", "47.9", "6.73"),
    ] {
        out.push_str(&format!(
            "| {name} | {cpu} | {gpu} | {} | {} |\n",
            med(&format!("e2e_gpu_{name}_b1")),
            med(&format!("e2e_cpu_{name}_b1"))
        ));
    }
    out.push_str(&format!(
        "\nLayer timing, 224², 64 channels (paper Table 1, Caffe CPU): 3x3 depthwise 39 ms vs 1x1 \
         convolution 11 ms. Ours on this adapter: `dw3x3_block` (depthwise + 1x1) {} ms, \
         `conv1x1_plain` {} ms, `asl_block_fused` {} ms, `asl_block_unfused` {} ms.\n",
        med("dw3x3_block"),
        med("conv1x1_plain"),
        med("asl_block_fused"),
        med("asl_block_unfused")
    ));
    out.push_str(
        "\nFor orientation (docs/design.md §6, PyTorch on a machine like this one, 2 cores): w32 7.4 ms \
         at batch 1 and 6 ms per image at batch 8; 1x1 convolution 64 -> 64 at 224² 1.35 ms, 3x3 \
         depthwise 0.66 ms (channels-last).\n",
    );
    out
}

pub(super) fn markdown(b: &Bench, command: &str, seconds: f64, chart: Option<&str>) -> String {
    let info = b.ctx.adapter_info();
    let mut out = String::new();
    out.push_str("# Benchmarks\n\nGenerated by `activeshift bench`; do not edit by hand. Regenerate with:\n\n```sh\n");
    out.push_str(&format!("{command}\n```\n\n"));
    out.push_str(&format!(
        "- adapter: **{}** ({:?}, {:?}), driver: {} {}\n- host: {} logical CPUs (the CPU engine and trainer use {} threads)\n- timing: {}; median and spread (min..max) of the timed runs after a warm-up\n- run took {seconds:.0} s{}\n\n",
        info.name,
        info.backend,
        info.device_type,
        info.driver,
        info.driver_info,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        rayon::current_num_threads(),
        timing_method(b),
        if b.quick { " (--quick)" } else { "" },
    ));
    if let Some(chart) = chart {
        out.push_str(&format!(
            "![Block and network timings of this run beside the paper's]({chart})\n\n"
        ));
    }
    out.push_str("## Ratios\n\n| ratio | value | goal | met | what |\n|---|---|---|---|---|\n");
    for r in ratios(b) {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            r.name,
            r.value.map_or("n/a".into(), |v| format!("{v:.3}")),
            r.goal,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            },
            r.what
        ));
    }
    out.push_str("\n## Cases\n\n| case | median ms | spread ms | throughput | what |\n|---|---|---|---|---|\n");
    for s in &b.samples {
        out.push_str(&format!(
            "| `{}` | {:.3} | {:.3}..{:.3} | {} | {} |\n",
            s.name,
            s.median(),
            s.min(),
            s.max(),
            fmt_rate(s),
            s.note
        ));
    }
    out.push_str("\n## The paper beside ours\n\n");
    out.push_str(&paper_rows(b));
    if let Some(l) = &b.layers {
        let e2e = b
            .find(&format!("e2e_gpu_{}_b1", l.model))
            .map(|s| s.median());
        out.push_str(&layers_markdown(l, e2e));
    }
    out
}
