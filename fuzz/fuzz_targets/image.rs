//! `preprocess::decode_image` then `preprocess` (ImageNet colour and 28x28 grayscale settings)
//! on arbitrary bytes: never panic; a decoded image always gives a finite input of the right
//! size.
#![no_main]

use activeshift::model::ArchConfig;
use activeshift::preprocess::{decode_image, preprocess};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = decode_image(data) else {
        return;
    };
    for p in [
        ArchConfig::as_resnet(32).preprocess,
        ArchConfig::asnet20(16, 1, 1, 28, 10).preprocess,
    ] {
        let x = preprocess(&img, &p).expect("a decoded image preprocesses");
        assert_eq!(x.len(), p.color.channels() * p.crop[0] * p.crop[1]);
        assert!(x.iter().all(|v| v.is_finite()));
    }
});
