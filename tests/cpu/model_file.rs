//! Architectures, parameter counts against the paper, and the safetensors model format with
//! its error paths.

use activeshift::Error;
use activeshift::model::{ArchConfig, BlockKind, HostTensor, Model, Plan};
use std::collections::BTreeMap;

/// A model of `config` with small deterministic weights.
fn model_of(config: &ArchConfig) -> Model {
    let params: BTreeMap<String, HostTensor> = config
        .param_shapes()
        .into_iter()
        .map(|(name, dims)| {
            let len = dims.iter().product::<usize>();
            let data = (0..len).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
            (name, HostTensor::new(dims, data).unwrap())
        })
        .collect();
    Model::new(config.clone(), Vec::new(), params).unwrap()
}

/// The order tensors are listed, initialised and stored in (checkpoints and a seeded
/// trainer's first weights depend on it), written out by hand for `config`.
fn listing_by_hand(config: &ArchConfig) -> Vec<(String, Vec<usize>)> {
    let mut p = vec![(
        "stem.weight".to_string(),
        vec![config.stem_width, config.in_channels, 3, 3],
    )];
    let mut cin = config.stem_width;
    let mut i = 0;
    for stage in &config.stages {
        for b in 0..stage.blocks {
            let (width, inner) = (stage.width, stage.width * config.expansion);
            let stride = if b == 0 { stage.stride } else { 1 };
            let name = |t: &str| format!("blocks.{i}.{t}");
            p.push((name("pre.scale"), vec![cin]));
            p.push((name("pre.bias"), vec![cin]));
            p.push((name("expand.weight"), vec![inner, cin]));
            p.push((name("mid.scale"), vec![inner]));
            p.push((name("mid.bias"), vec![inner]));
            match config.block {
                BlockKind::Asl => p.push((name("shift"), vec![2, inner])),
                BlockKind::Depthwise => p.push((name("depthwise.weight"), vec![inner, 1, 3, 3])),
            }
            p.push((name("reduce.weight"), vec![width, inner]));
            if stride != 1 || cin != width {
                p.push((name("shortcut.weight"), vec![width, cin]));
            }
            cin = width;
            i += 1;
        }
    }
    p.push(("head.scale".into(), vec![cin]));
    p.push(("head.bias".into(), vec![cin]));
    p.push(("fc.weight".into(), vec![config.classes, cin]));
    p.push(("fc.bias".into(), vec![config.classes]));
    p
}

#[test]
fn the_plan_lists_the_tensors_in_their_stored_order() {
    let mut depthwise = ArchConfig::builtin("asnet20-16x3").unwrap();
    depthwise.block = BlockKind::Depthwise;
    for config in [
        ArchConfig::builtin("as-resnet-w32").unwrap(),
        ArchConfig::builtin("asnet20-16x1").unwrap(),
        depthwise,
    ] {
        assert_eq!(
            config.param_shapes(),
            listing_by_hand(&config),
            "{}",
            config.name
        );
    }
}

#[test]
fn the_plan_as_json_names_every_op_and_tensor() {
    let config = ArchConfig::builtin("as-resnet-w32").unwrap();
    let plan = Plan::new(&config, 1);
    let json = plan.to_json();
    let ops = json["plan"]["ops"].as_array().unwrap();
    assert_eq!(ops.len(), plan.ops.len());
    let params = json["params"].as_array().unwrap();
    let count: u64 = params
        .iter()
        .map(|p| {
            let shape = p["shape"].as_array().unwrap();
            shape.iter().map(|d| d.as_u64().unwrap()).product::<u64>()
        })
        .sum();
    assert_eq!(count, config.param_count() as u64);
    let names: Vec<&str> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
    // Every tensor an op names is listed; decay only on weights.
    for op in ops {
        for field in ["weight", "shift", "bias"] {
            if let Some(name) = op[field].as_str() {
                assert!(names.contains(&name), "{name} of {op}");
            }
        }
        for field in ["norm", "affine"] {
            if let Some(prefix) = op[field].as_str() {
                assert!(names.contains(&format!("{prefix}.scale").as_str()), "{op}");
            }
        }
    }
    let kinds: std::collections::BTreeSet<&str> =
        ops.iter().map(|o| o["op"].as_str().unwrap()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "affine", "avg_pool", "conv1x1", "conv3x3", "shift", "softmax"
        ]
    );
    for p in params {
        let name = p["name"].as_str().unwrap();
        let decays = p["weight_decay"].as_bool().unwrap();
        assert_eq!(decays, name.ends_with(".weight"), "{name}");
    }
    let input = &json["plan"]["slots"][json["plan"]["input"].as_u64().unwrap() as usize];
    assert_eq!(
        (input["c"].as_u64(), input["h"].as_u64()),
        (Some(3), Some(224))
    );
}

#[test]
fn parameter_counts_match_the_paper() {
    // docs/design.md §3: ASNet-20 16x1 has exactly 35,386 parameters with a 10-class head.
    assert_eq!(
        ArchConfig::builtin("asnet20-16x1").unwrap().param_count(),
        35_386
    );
    // ImageNet: w32 about 0.90M, w50 1.96M, w68 3.42M.
    for (name, paper) in [
        ("as-resnet-w32", 0.90e6),
        ("as-resnet-w50", 1.96e6),
        ("as-resnet-w68", 3.42e6),
    ] {
        let c = ArchConfig::builtin(name).unwrap();
        let count = c.param_count() as f64;
        assert!(
            (count - paper).abs() / paper < 0.01,
            "{name}: {count} parameters, paper {paper}"
        );
        assert_eq!(c.shift_layers(), 17, "{name}: 17 ASLs");
    }
    // 28x28 grayscale input, 10 classes: the stem has one input channel.
    let fm = ArchConfig::asnet20(16, 1, 1, 28, 10);
    assert_eq!(fm.param_count(), 35_386 - 2 * 16 * 9);
    for name in activeshift::model::config::BUILTIN {
        ArchConfig::builtin(name).unwrap().validate().unwrap();
    }
}

#[test]
fn multiply_adds_match_the_paper() {
    // Paper Table 5: w32 171M, w50 404M, w68 729M mult-adds (224x224).
    for (name, paper) in [
        ("as-resnet-w32", 171e6),
        ("as-resnet-w50", 404e6),
        ("as-resnet-w68", 729e6),
    ] {
        let c = ArchConfig::builtin(name).unwrap();
        let madds = Plan::new(&c, 1).mult_adds() as f64;
        assert!(
            (madds - paper).abs() / paper < 0.05,
            "{name}: {madds} mult-adds, paper {paper}"
        );
    }
}

#[test]
fn unknown_architecture_is_an_error() {
    let err = ArchConfig::builtin("as-resnet-w33")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown architecture `as-resnet-w33`"),
        "{err}"
    );
}

#[test]
fn save_and_load_round_trip() {
    let config = ArchConfig::builtin("asnet20-16x1").unwrap();
    let model = model_of(&config);
    let bytes = model.to_safetensors().unwrap();
    let back = Model::from_safetensors(&bytes).unwrap();
    assert_eq!(back, model);

    let dir = std::env::temp_dir().join(format!("activeshift-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    let _ = std::fs::remove_file(&path);
    model.save(&path, false).unwrap();
    // Never overwrite silently.
    let err = model.save(&path, false).unwrap_err().to_string();
    assert!(err.contains("file exists"), "{err}");
    model.save(&path, true).unwrap();
    assert_eq!(Model::load(&path).unwrap(), model);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn expect_format_error(result: Result<Model, Error>, needle: &str) {
    match result {
        Err(Error::Format { msg, .. }) => assert!(msg.contains(needle), "`{msg}` lacks `{needle}`"),
        Err(e) => panic!("expected a format error mentioning `{needle}`, got {e}"),
        Ok(_) => panic!("expected a format error mentioning `{needle}`, got a model"),
    }
}

#[test]
fn bad_tensors_are_named() {
    let config = ArchConfig::builtin("asnet20-16x1").unwrap();
    let good = model_of(&config);

    let mut missing = good.params.clone();
    missing.remove("blocks.4.shift");
    expect_format_error(
        Model::new(config.clone(), vec![], missing),
        "tensor `blocks.4.shift` [2, 32] is missing",
    );

    let mut wrong = good.params.clone();
    wrong.insert(
        "blocks.0.expand.weight".into(),
        HostTensor::new(vec![16, 17], vec![0.0; 16 * 17]).unwrap(),
    );
    expect_format_error(
        Model::new(config.clone(), vec![], wrong),
        "tensor `blocks.0.expand.weight`: expected shape [16, 16], found [16, 17]",
    );

    let mut extra = good.params.clone();
    extra.insert(
        "blocks.99.shift".into(),
        HostTensor::new(vec![2], vec![0.0; 2]).unwrap(),
    );
    expect_format_error(
        Model::new(config.clone(), vec![], extra),
        "tensor `blocks.99.shift`",
    );

    let mut nan = good.params.clone();
    nan.get_mut("fc.bias").unwrap().data[3] = f32::NAN;
    expect_format_error(
        Model::new(config.clone(), vec![], nan),
        "tensor `fc.bias`: element 3 is NaN",
    );

    expect_format_error(
        Model::new(config.clone(), vec!["a".into(); 3], good.params.clone()),
        "3 labels for 10 classes",
    );
}

#[test]
fn configs_that_cannot_build_name_the_field() {
    let base = ArchConfig::builtin("asnet20-16x1").unwrap();
    let mut c = base.clone();
    c.stages[1].stride = 0;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("stages[1].stride"), "{err}");
    let mut c = base.clone();
    c.preprocess.mean = vec![0.0];
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("preprocess.mean"), "{err}");
    let mut c = base.clone();
    c.stages.clear();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("`stages`"), "{err}");

    // The same errors through a file: a config with classes = 0.
    let mut model = model_of(&base);
    model.config.classes = 0;
    let bytes = model.to_safetensors().unwrap();
    let err = Model::from_safetensors(&bytes).unwrap_err().to_string();
    assert!(err.contains("field `classes`"), "{err}");
}

#[test]
fn corrupt_files_are_errors() {
    let model = model_of(&ArchConfig::builtin("asnet20-16x1").unwrap());
    let bytes = model.to_safetensors().unwrap();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            Model::from_safetensors(&bytes[..cut]).is_err(),
            "a file cut at {cut} bytes loaded"
        );
    }
    assert!(Model::from_safetensors(b"not a model at all").is_err());
    // A valid safetensors file without our metadata.
    let plain = safetensors::serialize(
        [(
            "w",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    expect_format_error(
        Model::from_safetensors(&plain),
        "metadata key `format` is missing",
    );
}
