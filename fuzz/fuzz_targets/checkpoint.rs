//! `Trainer::from_checkpoint_bytes` on arbitrary bytes: never panics and never allocates more
//! than the file holds; a checkpoint that loads writes back to the same bytes, loads back
//! unchanged, and exports a valid model.
#![no_main]

use activeshift::train::Trainer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Trainer::from_checkpoint_bytes(data) else {
        return;
    };
    let bytes = t.checkpoint_bytes().expect("a loaded checkpoint serializes");
    let again = Trainer::from_checkpoint_bytes(&bytes).expect("a saved checkpoint loads");
    assert_eq!(again, t);
    assert_eq!(again.checkpoint_bytes().expect("serializes"), bytes);
    let model = t.export().expect("a valid checkpoint exports a model");
    assert_eq!(model.config, t.config);
});
