//! Where a training step's time goes: ASNet-20 16x1.
//!
//! - `cargo run --release --example train_profile [steps]`: batch 128 on the CPU trainer,
//!   every `Backend` operation timed by kind.
//! - `cargo run --release --example train_profile -- --gpu [batch] [repeats]`: batch 64 (by
//!   default) on the GPU trainer (`Session<GpuBackend>`); after two warm-up steps each prepared
//!   launch of a step runs by itself, timed by the device's timestamp queries where it has
//!   them, and the times are summed by op and by kernel (`file.wgsl:entry`).
use activeshift::Result;
use activeshift::train::backend::{
    BnBackwardArgs, Conv1x1Args, LinearArgs, RunningStatsStep, SgdStep,
};
use activeshift::train::{
    Backend, CpuBackend, CpuTensor, Session, TrainSettings, Trainer, fashion_mnist_config,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use activeshift::Shape4;

/// [`CpuBackend`] with a stopwatch per operation kind.
#[derive(Default)]
struct Timed {
    inner: CpuBackend,
    spent: BTreeMap<&'static str, (Duration, usize)>,
}

impl Timed {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce(&mut CpuBackend) -> T) -> T {
        let start = Instant::now();
        let out = f(&mut self.inner);
        let e = self.spent.entry(name).or_default();
        e.0 += start.elapsed();
        e.1 += 1;
        out
    }
}

type T = CpuTensor;

impl Backend for Timed {
    type Tensor = T;
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn upload(&mut self, dims: &[usize], data: &[f32]) -> Result<T> {
        self.time("upload", |b| b.upload(dims, data))
    }
    fn overwrite(&mut self, t: &mut T, data: &[f32]) -> Result<()> {
        self.time("overwrite", |b| b.overwrite(t, data))
    }
    fn download(&mut self, t: &[&T]) -> Result<Vec<Vec<f32>>> {
        self.time("download", |b| b.download(t))
    }
    fn conv3x3(&mut self, x: &T, xs: Shape4, w: &T, cout: usize, s: usize) -> Result<T> {
        self.time("conv3x3", |b| b.conv3x3(x, xs, w, cout, s))
    }
    fn conv3x3_backward_weight(
        &mut self,
        dy: &T,
        x: &T,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<T> {
        self.time("conv3x3_backward_weight", |b| {
            b.conv3x3_backward_weight(dy, x, xs, cout, s)
        })
    }
    fn conv3x3_backward_input(
        &mut self,
        dy: &T,
        xs: Shape4,
        w: &T,
        cout: usize,
        s: usize,
    ) -> Result<T> {
        self.time("conv3x3_backward_input", |b| {
            b.conv3x3_backward_input(dy, xs, w, cout, s)
        })
    }
    fn conv1x1(&mut self, a: Conv1x1Args<'_, T>) -> Result<T> {
        self.time("conv1x1", |b| b.conv1x1(a))
    }
    fn conv1x1_backward_weight(
        &mut self,
        dy: &T,
        x: &T,
        xs: Shape4,
        cout: usize,
        s: usize,
    ) -> Result<T> {
        self.time("conv1x1_backward_weight", |b| {
            b.conv1x1_backward_weight(dy, x, xs, cout, s)
        })
    }
    fn conv1x1_backward_input(
        &mut self,
        dy: &T,
        xs: Shape4,
        w: &T,
        cout: usize,
        s: usize,
    ) -> Result<T> {
        self.time("conv1x1_backward_input", |b| {
            b.conv1x1_backward_input(dy, xs, w, cout, s)
        })
    }
    fn bn_train(&mut self, x: &T, xs: Shape4, g: &T, be: &T, relu: bool) -> Result<(T, T)> {
        self.time("bn_train", |b| b.bn_train(x, xs, g, be, relu))
    }
    fn bn_frozen(&mut self, x: &T, xs: Shape4, g: &T, be: &T, st: &T, relu: bool) -> Result<T> {
        self.time("bn_frozen", |b| b.bn_frozen(x, xs, g, be, st, relu))
    }
    fn bn_backward(&mut self, a: BnBackwardArgs<'_, T>) -> Result<(T, T)> {
        self.time("bn_backward", |b| b.bn_backward(a))
    }
    fn shift(&mut self, x: &T, xs: Shape4, sh: &T, s: usize) -> Result<T> {
        self.time("shift", |b| b.shift(x, xs, sh, s))
    }
    fn shift_backward(&mut self, x: &T, xs: Shape4, d: &T, sh: &T, s: usize) -> Result<(T, T)> {
        self.time("shift_backward", |b| b.shift_backward(x, xs, d, sh, s))
    }
    fn depthwise3x3(&mut self, x: &T, xs: Shape4, w: &T, s: usize) -> Result<T> {
        self.time("depthwise3x3", |b| b.depthwise3x3(x, xs, w, s))
    }
    fn depthwise3x3_backward(
        &mut self,
        x: &T,
        xs: Shape4,
        dy: &T,
        w: &T,
        s: usize,
    ) -> Result<(T, T)> {
        self.time("depthwise3x3_backward", |b| {
            b.depthwise3x3_backward(x, xs, dy, w, s)
        })
    }
    fn add_assign(&mut self, a: &mut T, x: &T) -> Result<()> {
        self.time("add_assign", |b| b.add_assign(a, x))
    }
    fn avg_pool(&mut self, x: &T, xs: Shape4) -> Result<T> {
        self.time("avg_pool", |b| b.avg_pool(x, xs))
    }
    fn avg_pool_backward(&mut self, dy: &T, xs: Shape4) -> Result<T> {
        self.time("avg_pool_backward", |b| b.avg_pool_backward(dy, xs))
    }
    fn linear(&mut self, a: LinearArgs<'_, T>, bias: &T) -> Result<T> {
        self.time("linear", |b| b.linear(a, bias))
    }
    fn linear_backward(&mut self, dy: &T, a: LinearArgs<'_, T>) -> Result<(T, T)> {
        self.time("linear_backward", |b| b.linear_backward(dy, a))
    }
    fn add_relu_assign(&mut self, a: &mut T, x: &T) -> Result<()> {
        self.time("add_relu_assign", |b| b.add_relu_assign(a, x))
    }
    fn relu_backward_assign(&mut self, d: &mut T, y: &T) -> Result<()> {
        self.time("relu_backward_assign", |b| b.relu_backward_assign(d, y))
    }
    fn channel_sum(&mut self, x: &T, xs: Shape4) -> Result<T> {
        self.time("channel_sum", |b| b.channel_sum(x, xs))
    }
    fn sgd_step(&mut self, step: SgdStep<'_, T>) -> Result<()> {
        self.time("sgd_step", |b| b.sgd_step(step))
    }
    fn update_running_stats(&mut self, step: RunningStatsStep<'_, T>) -> Result<()> {
        self.time("update_running_stats", |b| b.update_running_stats(step))
    }
    fn softmax_cross_entropy(&mut self, l: &T, labels: &[u32], k: usize) -> Result<(T, T, T)> {
        self.time("softmax_cross_entropy", |b| {
            b.softmax_cross_entropy(l, labels, k)
        })
    }
}

/// ASNet-20 16x1 for Fashion-MNIST, and a fixed batch of `batch` images with their labels.
fn setup(batch: usize) -> Result<(Trainer, Vec<f32>, Vec<u32>)> {
    let trainer = Trainer::new(
        fashion_mnist_config(16, 1),
        vec![],
        TrainSettings::default(),
    )?;
    let input: Vec<f32> = (0..batch * 784)
        .map(|i| ((i * 7 % 251) as f32) / 251.0 - 0.5)
        .collect();
    let labels: Vec<u32> = (0..batch).map(|i| (i % 10) as u32).collect();
    Ok((trainer, input, labels))
}

/// The GPU profile: ms per step by op and by kernel.
fn gpu(batch: usize, repeats: usize) -> Result<()> {
    use activeshift::gpu::{DispatchTimer, GpuContext};
    use activeshift::train::GpuBackend;
    let ctx = pollster::block_on(GpuContext::new())?;
    let (trainer, input, labels) = setup(batch)?;
    let mut session = Session::new(trainer, GpuBackend::new(ctx.clone()))?;
    for _ in 0..2 {
        session.step_batch(&input, &labels, 0.01)?;
    }
    session.stats()?;
    // The whole step (host work, one submission, reading the stats back): best of `repeats`.
    let mut whole = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        session.step_batch(&input, &labels, 0.01)?;
        session.stats()?;
        whole = whole.min(start.elapsed().as_secs_f64() * 1e3);
    }
    let timer = DispatchTimer::new(&ctx);
    let launches: Vec<_> = session
        .backend()
        .prepared_launches()
        .flat_map(|(op, d)| d.parts().into_iter().map(move |(k, p)| (op, k, p)))
        .collect();
    let (mut by_op, mut by_kernel) = (BTreeMap::new(), BTreeMap::new());
    let mut total = 0.0;
    for (op, kernel, part) in &launches {
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            best = best.min(timer.time_blocking(part)?);
        }
        total += best;
        for (map, name) in [
            (&mut by_op, op.to_string()),
            (&mut by_kernel, kernel.clone()),
        ] {
            let e: &mut (f64, usize) = map.entry(name).or_default();
            e.0 += best;
            e.1 += 1;
        }
    }
    println!(
        "GPU step of batch {batch} on {}: {whole:.1} ms whole ({:.1} images/s); {} launches, \
         {total:.1} ms summed one by one (best of {repeats}, {})",
        ctx.describe(),
        batch as f64 / whole * 1e3,
        launches.len(),
        timer.clock()
    );
    for (title, map) in [("op", by_op), ("kernel", by_kernel)] {
        println!("by {title}:");
        let mut rows: Vec<_> = map.into_iter().collect();
        rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
        for (name, (ms, n)) in rows {
            println!(
                "{name:>48}: {ms:8.2} ms/step {:5.1}%  ({n} launches)",
                100.0 * ms / total
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--gpu") {
        let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
        return gpu(num(1, 64), num(2, 3));
    }
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let batch = 128;
    let (t, input, labels) = setup(batch)?;
    // Training as `activeshift train` runs it: a session on the (timed) CPU backend.
    let mut session = Session::new(t, Timed::default())?;
    session.step_batch(&input, &labels, 0.01)?;
    session.backend().spent.clear();
    let start = Instant::now();
    for _ in 0..steps {
        session.step_batch(&input, &labels, 0.01)?;
    }
    session.stats()?;
    let total = start.elapsed();
    let be = session.backend();
    println!(
        "{} steps of {batch}: {:.0} images/s, {:.1} ms/step ({})",
        steps,
        (steps * batch) as f64 / total.as_secs_f64(),
        total.as_secs_f64() * 1e3 / steps as f64,
        be.describe()
    );
    let mut rows: Vec<_> = be.spent.iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    let ops: Duration = rows.iter().map(|r| r.1.0).sum();
    for (name, (d, calls)) in rows {
        println!(
            "{name:>26}: {:7.2} ms/step {:5.1}%  ({} calls/step)",
            d.as_secs_f64() * 1e3 / steps as f64,
            100.0 * d.as_secs_f64() / total.as_secs_f64(),
            calls / steps
        );
    }
    println!(
        "{:>26}: {:7.2} ms/step",
        "graph (rest)",
        (total - ops).as_secs_f64() * 1e3 / steps as f64
    );
    Ok(())
}
