//! `caffe::parse_caffemodel` and `model::import_caffe` on arbitrary bytes: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(layers) = activeshift::caffe::parse_caffemodel(data) {
        for layer in &layers {
            for blob in &layer.blobs {
                assert_eq!(blob.data.len(), blob.shape.iter().product::<usize>());
                assert!(blob.data.iter().all(|v| v.is_finite()));
            }
        }
        let _ = activeshift::model::import_caffe(&layers, Vec::new());
    }
});
