//! The ablation's document, from the result files alone: accuracy per variant (mean ± sd over
//! seeds and every seed's number), the runs still missing, whether the paper's order holds, how
//! far the shifts moved, and the time and machine of every run.

use super::record::{Progress, RunResult, parse_run_name, run_name};
use super::{GENERATED, Plan, VARIANTS};
use activeshift::{Error, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Most entries of the results folder looked at.
const MAX_ENTRIES: usize = 100_000;

/// A planned run without a result file.
pub struct Missing {
    pub variant: &'static str,
    pub seed: u64,
    /// What is known of it (in progress, not started).
    pub status: String,
}

/// The result files of a folder, checked, with the plan's runs that have none.
pub struct Gathered {
    pub plan: Plan,
    /// In [`VARIANTS`] order, then by seed.
    pub results: Vec<RunResult>,
    pub missing: Vec<Missing>,
}

/// Read every result file (`VARIANT-seedK.json`) of `dir`; other files are not looked at. A
/// file that cannot be read or checked is an error naming it; so are results of different
/// recipes in one folder. A folder that does not exist holds no results.
pub fn gather(dir: &Path, plan: &Plan) -> Result<Gathered> {
    let mut results = Vec::new();
    if dir.is_dir() {
        let entries = std::fs::read_dir(dir).map_err(|e| crate::io_err(dir, e))?;
        for (i, entry) in entries.enumerate() {
            if i >= MAX_ENTRIES {
                return Err(Error::invalid(
                    "ablation --report",
                    format!("{} holds more than {MAX_ENTRIES} entries", dir.display()),
                ));
            }
            let path = entry.map_err(|e| crate::io_err(dir, e))?.path();
            let Some(stem) = path
                .extension()
                .filter(|e| *e == "json")
                .and(path.file_stem())
                .and_then(|s| s.to_str())
            else {
                continue;
            };
            if parse_run_name(stem).is_some() {
                results.push(RunResult::load(&path)?);
            }
        }
    }
    let order = |r: &RunResult| (VARIANTS.iter().position(|v| v.key == r.variant), r.seed);
    results.sort_by_key(order);
    if let Some(first) = results.first()
        && let Some(other) = results.iter().find(|r| r.recipe != first.recipe)
    {
        return Err(Error::invalid(
            "ablation --report",
            format!(
                "{} and {} in {} hold runs of different recipes ({} / {}); keep one recipe \
                     per folder",
                run_name(&first.variant, first.seed),
                run_name(&other.variant, other.seed),
                dir.display(),
                first.recipe.describe(),
                other.recipe.describe()
            ),
        ));
    }
    let mut missing = Vec::new();
    for (v, seeds) in plan {
        for &seed in seeds {
            if results.iter().any(|r| r.variant == v.key && r.seed == seed) {
                continue;
            }
            missing.push(Missing {
                variant: v.key,
                seed,
                status: status_of(dir, v.key, seed),
            });
        }
    }
    Ok(Gathered {
        plan: plan.clone(),
        results,
        missing,
    })
}

/// What the in-progress folder says of a run without a result.
fn status_of(dir: &Path, variant: &str, seed: u64) -> String {
    let name = run_name(variant, seed);
    let progress = dir.join("in-progress").join(format!("{name}.json"));
    let ckpt = dir.join("in-progress").join(format!("{name}.ckpt"));
    if std::fs::symlink_metadata(&progress).is_ok() {
        return match Progress::load(&progress) {
            Ok(p) => format!(
                "in progress: {} of {} epochs done{}, {} of training kept",
                p.epoch,
                p.recipe.epochs,
                if p.step_in_epoch > 0 {
                    format!(" (+{} steps)", p.step_in_epoch)
                } else {
                    String::new()
                },
                crate::train_cmd::format_duration(p.seconds())
            ),
            Err(e) => format!(
                "in progress (progress file unreadable: {})",
                crate::one_line(&e)
            ),
        };
    }
    if ckpt.exists() {
        return "in progress (a checkpoint, no progress file)".into();
    }
    "not started".into()
}

/// Mean and sample standard deviation (n - 1; none for fewer than two values).
pub fn mean_sd(v: &[f64]) -> (f64, Option<f64>) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let sd = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    (mean, sd)
}

/// Text from a result file made safe for a Markdown table cell.
fn cell(s: &str) -> String {
    crate::printable(s).replace('|', "\\|")
}

/// Channel-weighted means over a run's ASL layers: start, end, change; and the largest change.
fn run_movement(r: &RunResult) -> Option<(f64, f64, f64, f64)> {
    let ch: usize = r.shift_layers.iter().map(|l| l.channels).sum();
    if ch == 0 {
        return None;
    }
    let w = |f: &dyn Fn(&super::record::ShiftLayer) -> f64| {
        r.shift_layers
            .iter()
            .map(|l| f(l) * l.channels as f64)
            .sum::<f64>()
            / ch as f64
    };
    Some((
        w(&|l| l.start_mean_abs),
        w(&|l| l.end_mean_abs),
        w(&|l| l.mean_abs_change),
        r.shift_layers
            .iter()
            .map(|l| l.max_abs_change)
            .fold(0.0, f64::max),
    ))
}

fn of_variant<'a>(g: &'a Gathered, key: &str) -> Vec<&'a RunResult> {
    g.results.iter().filter(|r| r.variant == key).collect()
}

/// Whether the report has a row for the variant: it is planned or has results (a diagnostic
/// variant outside the default plan appears once it was run).
fn has_row(g: &Gathered, key: &str) -> bool {
    planned(g, key) > 0 || !of_variant(g, key).is_empty()
}

fn planned(g: &Gathered, key: &str) -> usize {
    g.plan
        .iter()
        .find(|(v, _)| v.key == key)
        .map_or(0, |(_, s)| s.len())
}

fn accuracies(runs: &[&RunResult]) -> Vec<f64> {
    runs.iter().map(|r| r.accuracy).collect()
}

/// `91.00% ± 1.00` (percent, sd in percentage points), `90.00% (one seed)`, `missing`.
fn mean_sd_text(runs: &[&RunResult]) -> String {
    if runs.is_empty() {
        return "missing".into();
    }
    match mean_sd(&accuracies(runs)) {
        (m, Some(sd)) => format!("{:.2}% ± {:.2}", m * 100.0, sd * 100.0),
        (m, None) => format!("{:.2}% (one seed)", m * 100.0),
    }
}

/// The one-sided exact Mann-Whitney test of "`a` tends to be larger than `b`": the statistic U
/// (pairs `(x, y)` with `x > y`, a tie counting one half) and the probability that U is at least
/// that large when both come from one distribution (every ranking equally likely; a tie's half
/// is rounded down, which can only raise the probability). `None` for an empty side or sides
/// too large to count exactly (more than 60 values together).
fn mann_whitney(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 || n + m > 60 {
        return None;
    }
    let u: f64 = a
        .iter()
        .flat_map(|x| {
            b.iter().map(move |y| match x.partial_cmp(y) {
                Some(std::cmp::Ordering::Greater) => 1.0,
                Some(std::cmp::Ordering::Equal) => 0.5,
                _ => 0.0,
            })
        })
        .sum();
    // ways[i][j][k]: orderings of i values of `a` and j of `b` with U = k. The largest value is
    // an `a` (above all j of `b`: U grows by j) or a `b` (U unchanged).
    let mut ways = vec![vec![Vec::<u128>::new(); m + 1]; n + 1];
    for i in 0..=n {
        for j in 0..=m {
            ways[i][j] = if i == 0 || j == 0 {
                vec![1]
            } else {
                let mut w = vec![0u128; i * j + 1];
                for (k, c) in ways[i - 1][j].iter().enumerate() {
                    w[k + j] += c;
                }
                for (k, c) in ways[i][j - 1].iter().enumerate() {
                    w[k] += c;
                }
                w
            };
        }
    }
    let w = &ways[n][m];
    let total: u128 = w.iter().sum();
    let at_least: u128 = w.iter().skip(u.floor() as usize).sum();
    Some((u, at_least as f64 / total as f64))
}

/// The sentence on how the learned seeds rank against the sampled-real ones.
fn rank_sentence(learned: &[f64], sampled: &[f64]) -> String {
    let Some((u, p)) = mann_whitney(learned, sampled) else {
        return String::new();
    };
    let pairs = learned.len() * sampled.len();
    let low = learned.iter().copied().fold(f64::INFINITY, f64::min);
    let high = sampled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let separated = if low > high {
        format!(
            "every learned seed is above every sampled-real seed ({:.2}% the lowest against \
             {:.2}% the highest), ",
            low * 100.0,
            high * 100.0
        )
    } else {
        String::new()
    };
    format!(
        " By rank: {separated}the learned run is the better one in U = {u} of {pairs} pairs of \
         seeds; were the two variants alike, a U this large would come with probability {p:.3} \
         (one-sided exact Mann-Whitney test)."
    )
}

/// Whether the means keep the paper's order, with the reason: `None` while a variant of the
/// four has no finished run.
fn paper_order(g: &Gathered) -> (Option<bool>, String) {
    let keys = ["learned", "sampled-real", "sampled-int", "grouped"];
    let means: Vec<Option<f64>> = keys
        .iter()
        .map(|k| {
            let runs = of_variant(g, k);
            (!runs.is_empty()).then(|| mean_sd(&accuracies(&runs)).0)
        })
        .collect();
    let absent: Vec<&str> = keys
        .iter()
        .zip(&means)
        .filter(|(_, m)| m.is_none())
        .map(|(k, _)| *k)
        .collect();
    if !absent.is_empty() {
        return (
            None,
            format!(
                "Cannot be decided yet: no finished run of {}.",
                absent.join(", ")
            ),
        );
    }
    let m: Vec<f64> = means.into_iter().flatten().collect();
    let checks = [
        ("learned > sampled real", m[0] > m[1], m[0], m[1]),
        ("sampled real > sampled integer", m[1] > m[2], m[1], m[2]),
        ("sampled integer >= grouped", m[2] >= m[3], m[2], m[3]),
    ];
    let ok = checks.iter().all(|c| c.1);
    let mut s = format!(
        "{} by the means over seeds: ",
        if ok { "Reproduced" } else { "Not reproduced" }
    );
    let parts: Vec<String> = checks
        .iter()
        .map(|(what, holds, a, b)| {
            format!(
                "{what}: {:.2}% vs {:.2}% ({})",
                a * 100.0,
                b * 100.0,
                if *holds { "holds" } else { "fails" }
            )
        })
        .collect();
    s.push_str(&parts.join("; "));
    s.push('.');
    let (l, r) = (of_variant(g, "learned"), of_variant(g, "sampled-real"));
    let (sl, sr) = (mean_sd(&accuracies(&l)).1, mean_sd(&accuracies(&r)).1);
    let sd = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{:.2}", v * 100.0));
    let _ = write!(
        s,
        " The gap that matters, learned minus sampled real: {:+.2} points over {} and {} seeds \
         (seed sd {} and {} points).",
        (m[0] - m[1]) * 100.0,
        l.len(),
        r.len(),
        sd(sl),
        sd(sr)
    );
    s.push_str(&rank_sentence(&accuracies(&l), &accuracies(&r)));
    (Some(ok), s)
}

/// The document.
pub fn markdown(g: &Gathered, dir: &Path) -> String {
    let shown = dir.display().to_string().replace('\\', "/");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{GENERATED} from the result files in {shown}/; edit the code, not this file -->\n"
    );
    s.push_str("# The paper's shift ablation on Fashion-MNIST\n\n");
    let _ = write!(
        s,
        "Generated by `activeshift ablation --report` from the result files in `{shown}/` (one \
         per finished run, written by `activeshift ablation`; nothing here is trained or measured \
         by the report). Every run trains ASNet-20 and changes only what sits between the two \
         1x1 convolutions of every block. Test split: the last 1000 images of each class. "
    );
    match g.results.first() {
        Some(r) => {
            let _ = writeln!(s, "Recipe: {}.\n", cell(&r.recipe.describe()));
        }
        None => s.push_str("No run has finished yet.\n\n"),
    }
    s.push_str("## Test accuracy\n\n");
    s.push_str("| shifts / block | runs (finished of planned) | test accuracy, mean ± sd | per seed | params | mult-adds |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for v in VARIANTS.iter().filter(|v| has_row(g, v.key)) {
        let runs = of_variant(g, v.key);
        let mut seeds: Vec<String> = runs
            .iter()
            .map(|r| format!("{}: {:.2}%", r.seed, r.accuracy * 100.0))
            .collect();
        seeds.extend(
            g.missing
                .iter()
                .filter(|m| m.variant == v.key)
                .map(|m| format!("{}: missing", m.seed)),
        );
        let first = runs.first();
        let _ = writeln!(
            s,
            "| {} | {} of {} | {} | {} | {} | {} |",
            v.label,
            runs.len(),
            planned(g, v.key),
            mean_sd_text(&runs),
            if seeds.is_empty() {
                "-".into()
            } else {
                format!("seed {}", seeds.join(", "))
            },
            first.map_or("-".into(), |r| r.params.to_string()),
            first.map_or("-".into(), |r| format!("{:.2}M", r.mult_adds as f64 / 1e6)),
        );
    }
    s.push_str("\nsd: the sample standard deviation over seeds (n - 1), in percentage points.\n\n");
    if g.missing.is_empty() {
        s.push_str("Missing runs: none.\n\n");
    } else {
        let _ = writeln!(
            s,
            "Missing runs ({}), listed, not estimated:\n",
            g.missing.len()
        );
        for m in &g.missing {
            let _ = writeln!(
                s,
                "- {} seed {}: {} (`activeshift ablation --only {}:{}`)",
                m.variant, m.seed, m.status, m.variant, m.seed
            );
        }
        s.push('\n');
    }
    s.push_str("## The paper's order\n\n");
    s.push_str("Table 4 of the paper: learned > sampled real > sampled integer >= grouped. ");
    s.push_str(&paper_order(g).1);
    s.push_str("\n\n");
    movement_section(g, &mut s);
    time_section(g, &mut s);
    s
}

fn movement_section(g: &Gathered, s: &mut String) {
    s.push_str("## How far the shifts moved\n\n");
    s.push_str(
        "Mean \\|shift\\| over both components of every channel at the run's start and at its \
         end, and the mean \\|end - start\\|, weighted by channels over the ASL layers, then \
         averaged over seeds; largest: the largest \\|end - start\\| of one component in any \
         run. Frozen shifts stay where they started.\n\n",
    );
    s.push_str("| shifts | runs | mean \\|shift\\| at start | at end | mean \\|end - start\\| | largest \\|end - start\\| |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    let mut with_layers = Vec::new();
    for v in VARIANTS.iter().filter(|v| has_row(g, v.key)) {
        let runs = of_variant(g, v.key);
        let moves: Vec<(f64, f64, f64, f64)> =
            runs.iter().filter_map(|r| run_movement(r)).collect();
        if runs.is_empty() {
            let _ = writeln!(s, "| {} | 0 | missing | | | |", v.key);
            continue;
        }
        if moves.is_empty() {
            let _ = writeln!(
                s,
                "| {} | {} | no shifts (3x3 depthwise) | | | |",
                v.key,
                runs.len()
            );
            continue;
        }
        let avg = |f: fn(&(f64, f64, f64, f64)) -> f64| {
            moves.iter().map(f).sum::<f64>() / moves.len() as f64
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} |",
            v.key,
            moves.len(),
            avg(|m| m.0),
            avg(|m| m.1),
            avg(|m| m.2),
            moves.iter().map(|m| m.3).fold(0.0, f64::max)
        );
        with_layers.push((v.key, runs));
    }
    if with_layers.is_empty() {
        s.push('\n');
        return;
    }
    s.push_str("\n### Per layer\n\nStart → end of the mean \\|shift\\| (mean \\|end - start\\|), averaged over seeds.\n\n");
    let mut names: Vec<(String, usize)> = Vec::new();
    for (_, runs) in &with_layers {
        for l in runs.iter().flat_map(|r| &r.shift_layers) {
            if !names.iter().any(|(n, _)| *n == l.name) {
                names.push((l.name.clone(), l.channels));
            }
        }
    }
    let block = |n: &str| {
        n.strip_prefix("blocks.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    names.sort_by_key(|(n, _)| block(n));
    s.push_str("| layer | channels |");
    for (k, _) in &with_layers {
        let _ = write!(s, " {k} |");
    }
    s.push_str("\n|---|---|");
    for _ in &with_layers {
        s.push_str("---|");
    }
    s.push('\n');
    for (name, channels) in &names {
        let _ = write!(s, "| {} | {channels} |", cell(name));
        for (_, runs) in &with_layers {
            let layers: Vec<_> = runs
                .iter()
                .flat_map(|r| r.shift_layers.iter().filter(|l| l.name == *name))
                .collect();
            if layers.is_empty() {
                s.push_str(" - |");
                continue;
            }
            let n = layers.len() as f64;
            let avg = |f: fn(&super::record::ShiftLayer) -> f64| {
                layers.iter().map(|l| f(l)).sum::<f64>() / n
            };
            let _ = write!(
                s,
                " {:.3} → {:.3} ({:.4}) |",
                avg(|l| l.start_mean_abs),
                avg(|l| l.end_mean_abs),
                avg(|l| l.mean_abs_change)
            );
        }
        s.push('\n');
    }
    s.push('\n');
}

fn time_section(g: &Gathered, s: &mut String) {
    s.push_str("## Wall time and machine\n\n");
    if g.results.is_empty() {
        s.push_str("No run has finished yet.\n");
        return;
    }
    s.push_str(
        "Wall time: the training kept over all sessions of a run (per-epoch test evaluation \
         included; work lost to a kill after the last checkpoint is not counted). Train img/s: \
         training images over that time. Inference: the CPU engine at batch 128 where the run \
         finished. Timings depend on the machine and its load.\n\n",
    );
    s.push_str("| run | test accuracy | wall time | train img/s | inference img/s (CPU) | sessions | machines (threads, backend) | activeshift |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in &g.results {
        let mut machines: Vec<String> = Vec::new();
        for x in &r.sessions {
            let t = format!(
                "{} ({} threads, {})",
                cell(&x.machine.cpu),
                x.machine.threads,
                cell(&x.backend)
            );
            if !machines.contains(&t) {
                machines.push(t);
            }
        }
        let _ = writeln!(
            s,
            "| {} | {:.2}% ({}/{}) | {} | {:.0} | {:.0} | {} | {} | {}{} |",
            run_name(&r.variant, r.seed),
            r.accuracy * 100.0,
            r.test_correct,
            r.test_total,
            if r.untimed_steps > 0 {
                format!(
                    "{} + {} untimed steps",
                    crate::train_cmd::format_duration(r.wall_seconds),
                    r.untimed_steps
                )
            } else {
                crate::train_cmd::format_duration(r.wall_seconds)
            },
            r.images_per_second,
            r.inference_images_per_second_cpu,
            r.sessions.len(),
            machines.join("; "),
            cell(&r.version),
            r.commit
                .as_deref()
                .map_or(String::new(), |c| format!(" ({})", cell(c))),
        );
    }
}

/// The report as JSON.
pub fn json(g: &Gathered) -> serde_json::Value {
    let variants: Vec<serde_json::Value> = VARIANTS
        .iter()
        .filter(|v| has_row(g, v.key))
        .map(|v| {
            let runs = of_variant(g, v.key);
            let (mean, sd) = mean_sd(&accuracies(&runs));
            serde_json::json!({
                "variant": v.key,
                "label": v.label,
                "planned": planned(g, v.key),
                "finished": runs.len(),
                "accuracy_mean": (!runs.is_empty()).then_some(mean),
                "accuracy_sd": sd,
                "runs": runs.iter().map(|r| serde_json::json!({
                    "seed": r.seed,
                    "accuracy": r.accuracy,
                    "test_correct": r.test_correct,
                    "test_total": r.test_total,
                    "wall_seconds": r.wall_seconds,
                    "movement": run_movement(r).map(|m| serde_json::json!({
                        "start_mean_abs": m.0, "end_mean_abs": m.1,
                        "mean_abs_change": m.2, "max_abs_change": m.3,
                    })),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "recipe": g.results.first().map(|r| &r.recipe),
        "variants": variants,
        "missing": g.missing.iter().map(|m| serde_json::json!({
            "variant": m.variant, "seed": m.seed, "status": m.status,
        })).collect::<Vec<_>>(),
        "paper_order_reproduced": paper_order(g).0,
        "learned_vs_sampled_real": mann_whitney(
            &accuracies(&of_variant(g, "learned")),
            &accuracies(&of_variant(g, "sampled-real")),
        )
        .map(|(u, p)| serde_json::json!({"mann_whitney_u": u, "p_one_sided": p})),
    })
}

#[cfg(test)]
mod tests {
    use super::{mann_whitney, mean_sd};

    #[test]
    fn mann_whitney_counts_orderings_exactly() {
        // Complete separation of 3 and 3: one ordering of C(6, 3) = 20.
        let (u, p) = mann_whitney(&[0.93, 0.94, 0.95], &[0.90, 0.91, 0.92]).unwrap();
        assert_eq!(u, 9.0);
        assert!((p - 1.0 / 20.0).abs() < 1e-15, "{p}");
        // Reversed: U = 0, every ordering has U >= 0.
        assert_eq!(
            mann_whitney(&[0.90, 0.91, 0.92], &[0.93, 0.94, 0.95]),
            Some((0.0, 1.0))
        );
        // 2 vs 2, a = {2, 4}, b = {1, 3}: U = 3. The C(4, 2) = 6 orderings have U = 0, 1, 2,
        // 2, 3, 4: two of them reach 3.
        let (u, p) = mann_whitney(&[2.0, 4.0], &[1.0, 3.0]).unwrap();
        assert_eq!(u, 3.0);
        assert!((p - 2.0 / 6.0).abs() < 1e-15, "{p}");
        // A tie counts one half; the probability uses U rounded down.
        let (u, p) = mann_whitney(&[2.0, 3.0], &[2.0, 1.0]).unwrap();
        assert_eq!(u, 3.5);
        assert!((p - 2.0 / 6.0).abs() < 1e-15, "{p}");
        assert_eq!(mann_whitney(&[], &[1.0]), None);
        assert_eq!(mann_whitney(&[0.0; 31], &[0.0; 30]), None);
        // The largest case counted: 30 and 30 (C(60, 30) orderings), separated.
        let a: Vec<f64> = (30..60).map(f64::from).collect();
        let b: Vec<f64> = (0..30).map(f64::from).collect();
        let (u, p) = mann_whitney(&a, &b).unwrap();
        assert_eq!(u, 900.0);
        assert!((p - 1.0 / 118_264_581_564_861_424.0).abs() < 1e-30, "{p}");
    }

    #[test]
    fn sample_standard_deviation() {
        let (m, sd) = mean_sd(&[0.90, 0.91, 0.92]);
        assert!((m - 0.91).abs() < 1e-12);
        assert!((sd.unwrap() - 0.01).abs() < 1e-12);
        assert_eq!(mean_sd(&[0.5]).1, None);
    }
}
