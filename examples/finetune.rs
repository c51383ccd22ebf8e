//! Fine-tune the embedded Fashion-MNIST model's classifier on a folder of your own images
//! (`DIR/<class>/*.png|jpg|...`) and save the model with the folder's class names:
//! `cargo run --release --example finetune -- DIR OUT.safetensors`.
use activeshift::image_folder::{self, FolderOptions};
use activeshift::train::{TrainSettings, head};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, out] = &args[..] else {
        return Err("usage: finetune DIR OUT.safetensors".into());
    };
    let model = activeshift::Model::embedded_default()?; // or Model::load("w32.safetensors")?
    let data = image_folder::load(
        dir.as_ref(),
        &FolderOptions::for_network(&model.config),
        &|_| {},
    )?;
    let settings = TrainSettings {
        epochs: 30,
        batch: 32,
        ..TrainSettings::default()
    };
    let tuned = head::finetune(&model, &data, &settings, |epoch, s| {
        println!(
            "epoch {}: loss {:.3}, accuracy {:.1}%",
            epoch + 1,
            s.loss(),
            100.0 * s.accuracy()
        );
        Ok(())
    })?;
    if let Some(val) = tuned.val {
        println!(
            "held out: {:.1}% of {} images",
            100.0 * val.accuracy(),
            val.seen
        );
    }
    tuned.model.save(out.as_ref(), false)?;
    println!(
        "wrote {out} ({} classes: {})",
        data.classes.len(),
        data.classes.join(", ")
    );
    Ok(())
}
