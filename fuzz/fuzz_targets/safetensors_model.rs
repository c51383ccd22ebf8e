//! `Model::from_safetensors` on arbitrary bytes: never panics; a file that loads saves and
//! loads back unchanged, and a small one runs on the CPU engine.
#![no_main]

use activeshift::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(model) = Model::from_safetensors(data) else {
        return;
    };
    let bytes = model.to_safetensors().expect("a loaded model serializes");
    let again = Model::from_safetensors(&bytes).expect("a saved model loads");
    assert_eq!(again, model);
    let c = &model.config;
    let per_image = c.in_channels * c.input_size[0] * c.input_size[1];
    if c.param_count() <= 100_000 && per_image <= 4096 && c.stem_width <= 64 {
        let out = model
            .forward_cpu(&vec![0.5; per_image])
            .expect("a valid model runs");
        assert_eq!(out.logits.len(), c.classes);
    }
});
