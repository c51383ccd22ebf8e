//! `activeshift tune`: measure which kernel variant is fastest for every op and shape a model
//! runs on this device, print the table, keep the decisions in the tuning cache, and time a
//! whole forward pass with the rules against the tuned choice in the same run.

use activeshift::gpu::tune::{TuneBudget, TuneKey, Tuning, tune_blocking};
use activeshift::model::GpuModel;
use activeshift::{GpuContext, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct TuneArgs {
    /// The model whose shapes to tune: a .safetensors file or a pretrained name (`as-resnet-w32`).
    #[arg(long)]
    model: PathBuf,
    /// Batch size the shapes are tuned for.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Time budget per op and shape, in milliseconds.
    #[arg(long, default_value_t = 400)]
    budget_ms: u64,
    /// Whole forward passes timed per policy (alternating rules and tuned).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Do not write the tuning cache.
    #[arg(long)]
    no_save: bool,
}

/// Where the tuning cache lives: `tune.json` in the program's cache directory
/// ([`crate::pipeline_cache::cache_dir`]).
pub fn cache_path() -> Option<PathBuf> {
    crate::pipeline_cache::cache_dir().map(|d| d.join("tune.json"))
}

/// The cached decisions for `ctx`'s adapter, or None (with a warning on stderr when a cache
/// exists but cannot be used: corrupt, stale, or from another adapter).
pub fn load_cache(ctx: &GpuContext) -> Option<Tuning> {
    let path = cache_path()?;
    // Bounded and regular files only, like every input (a FIFO here must not hang a command).
    let text = match activeshift::model::read_file_limited(&path, 16 << 20, "tuning cache")
        .map(String::from_utf8)
    {
        Ok(Ok(text)) => text,
        Err(activeshift::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return None;
        }
        Ok(Err(_)) => {
            eprintln!(
                "warning: ignoring the tuning cache {} (not UTF-8)",
                path.display()
            );
            return None;
        }
        Err(e) => {
            eprintln!("warning: ignoring the tuning cache: {e}");
            return None;
        }
    };
    match Tuning::from_json(&text, ctx.adapter_info()) {
        Ok(t) => Some(t),
        Err(why) => {
            eprintln!(
                "warning: ignoring the tuning cache {} ({why}); the rules choose the kernels",
                path.display()
            );
            None
        }
    }
}

fn forward_ms(gm: &mut GpuModel, input: &[f32]) -> Result<f64> {
    let t = Instant::now();
    pollster::block_on(gm.forward(input))?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: TuneArgs) -> Result<()> {
    // The rules, whatever a cache says, as the reference.
    let rules = crate::open_gpu_with(false)?;
    println!("adapter: {}", rules.describe());
    let timer = activeshift::gpu::DispatchTimer::new(&rules);
    println!("kernel times: {}", timer.clock());
    let model = crate::load_model(Some(&a.model))?;
    let cfg = &model.config;
    let input = vec![0.0f32; a.batch * cfg.in_channels * cfg.input_size[0] * cfg.input_size[1]];

    // The shapes the model asks the policy about, from one forward pass.
    let mut gm_rules = GpuModel::new(&rules, &model)?;
    pollster::block_on(gm_rules.forward(&input))?;
    let keys: Vec<TuneKey> = rules.policy().asked();
    println!("{} op shapes, budget {} ms each\n", keys.len(), a.budget_ms);
    let budget = TuneBudget::per_key(Duration::from_millis(a.budget_ms));
    let tuning = tune_blocking(&rules, &keys, budget)?;

    println!(
        "{:<36} {:<16} {:<16} candidates (us per run)",
        "op and shape", "rule", "tuned"
    );
    for key in &keys {
        let Some(e) = tuning.entries().get(&key.text()) else {
            continue;
        };
        let times: Vec<String> = e
            .micros
            .iter()
            .map(|(n, us)| format!("{n} {us:.0}"))
            .collect();
        let rule_us = e.micros.get(&e.rule).copied().unwrap_or(f64::NAN);
        let best_us = e.micros.get(&e.chosen).copied().unwrap_or(f64::NAN);
        println!(
            "{:<36} {:<16} {:<16} {}  (rule/tuned {:.2})",
            key.text(),
            e.rule,
            e.chosen,
            times.join(", "),
            rule_us / best_us
        );
    }

    // A whole forward pass with each policy, alternating, in this run.
    let tuned = rules.clone().with_policy(
        rules
            .policy_overrides()
            .clone()
            .tuning(Some(tuning.clone())),
    );
    let mut gm_tuned = GpuModel::new(&tuned, &model)?;
    gm_tuned.set_fused(gm_rules.fused());
    pollster::block_on(gm_tuned.forward(&input))?;
    let (mut r, mut t) = (Vec::new(), Vec::new());
    for _ in 0..a.rounds.max(1) {
        r.push(forward_ms(&mut gm_rules, &input)?);
        t.push(forward_ms(&mut gm_tuned, &input)?);
    }
    let (r, t) = (median(r), median(t));
    println!(
        "\nwhole forward, batch {} (median of {} alternating runs): rules {r:.1} ms, tuned \
         {t:.1} ms, rules/tuned {:.2}",
        a.batch,
        a.rounds.max(1),
        r / t
    );

    if !a.no_save
        && let Some(path) = cache_path()
    {
        let mut all = load_cache(&rules).unwrap_or_default();
        all.merge(tuning);
        let io = |source| activeshift::Error::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Atomically: a concurrent command reads the old cache or the new one, never half.
        activeshift::model::write_atomic(
            &path,
            all.to_json(rules.adapter_info()).as_bytes(),
            true,
        )?;
        println!("tuning cache: {}", path.display());
    }
    Ok(())
}
