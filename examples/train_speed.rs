//! Measures CPU training throughput of ASNet-20 16x1 on Fashion-MNIST-sized input:
//! `cargo run --release --example train_speed`.
use activeshift::data::{Dataset, PIXELS};
use activeshift::train::{TrainSettings, Trainer, fashion_mnist_config};

fn main() -> activeshift::Result<()> {
    let n = 1024;
    let set = Dataset {
        pixels: (0..n * PIXELS).map(|i| (i * 7 % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    };
    let mut t = Trainer::new(
        fashion_mnist_config(16, 1),
        vec![],
        TrainSettings::default(),
    )?;
    let idx: Vec<usize> = (0..128).collect();
    t.train_step(&set, &idx, 0.1, 0)?;
    let steps = 8;
    let start = std::time::Instant::now();
    for s in 0..steps {
        t.train_step(&set, &idx, 0.1, s)?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:.0} images/s ({:.1} ms per step of 128)",
        (steps * 128) as f64 / secs,
        secs * 1000.0 / steps as f64
    );
    let start = std::time::Instant::now();
    let input = vec![0.1f32; 500 * PIXELS];
    t.forward_eval(&input)?;
    println!(
        "eval: {:.0} images/s",
        500.0 / start.elapsed().as_secs_f64()
    );
    Ok(())
}
