//! Network definitions as data: an [`ArchConfig`] describes an AS-ResNet / ASNet completely
//! (stem, stages, widths, expansion, strides, input, classes, preprocessing); the network, its
//! parameter list and its parameter count are derived from it.

use super::params::{Norm, ParamId, block_prefix};
use crate::error::{Error, Result};
// The image-input layer owns how an image becomes an input tensor; a network description names it.
pub use crate::preprocess::{ColorOrder, Preprocess};
use serde::{Deserialize, Serialize};

/// One stage of residual blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageConfig {
    /// Number of blocks.
    pub blocks: usize,
    /// Output width (channels) of every block of the stage.
    pub width: usize,
    /// Stride of the stage's first block (the others use 1).
    pub stride: usize,
}

/// Which block the network is built from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// Active Shift Layer between the two 1x1 convolutions (the paper's block).
    #[default]
    Asl,
    /// A 3x3 depthwise convolution (pad 1, no bias) in place of the shift: the MobileNet-style
    /// baseline of the paper's Table 2.
    Depthwise,
}

/// A complete network description (docs/design.md §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchConfig {
    /// Name, e.g. `as-resnet-w32` or `asnet20-16x1`.
    pub name: String,
    /// Input channels (3 for colour, 1 for grayscale).
    pub in_channels: usize,
    /// Input `[height, width]`.
    pub input_size: [usize; 2],
    /// Number of classes of the classifier.
    pub classes: usize,
    /// Output channels of the 3x3 stem convolution.
    pub stem_width: usize,
    /// Stride of the stem convolution.
    pub stem_stride: usize,
    /// Expansion E of the blocks' inner width (inner = width * E).
    pub expansion: usize,
    /// The residual stages in order.
    pub stages: Vec<StageConfig>,
    /// The block type.
    #[serde(default)]
    pub block: BlockKind,
    /// How images become input tensors.
    pub preprocess: Preprocess,
}

/// One residual block as the network executes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    /// Position among the network's blocks (the `i` of [`ParamId::Expand`]`(i)`, ...).
    pub index: usize,
    /// Parameter name prefix, e.g. `blocks.3`.
    pub prefix: String,
    /// Input channels.
    pub cin: usize,
    /// Inner channels (`width * expansion`), where the shift acts.
    pub inner: usize,
    /// Output channels.
    pub width: usize,
    /// Stride of the shift (and of the projection shortcut).
    pub stride: usize,
    /// Whether the shortcut is a strided 1x1 convolution (else the identity).
    pub projection: bool,
    /// What acts between the two 1x1 convolutions.
    pub kind: BlockKind,
}

/// ImageNet preprocessing of the authors' weights: short side 256, centre crop 224, BGR,
/// mean (103.94, 116.78, 123.68), multiplier 0.017352.
pub fn imagenet_preprocess() -> Preprocess {
    Preprocess {
        resize_short: Some(256),
        crop: [224, 224],
        color: ColorOrder::Bgr,
        mean: vec![103.94, 116.78, 123.68],
        scale: vec![0.017352; 3],
    }
}

/// Largest input height or width a configuration may declare.
pub const MAX_INPUT_SIDE: usize = 8192;
/// Most stages a configuration may have.
pub const MAX_STAGES: usize = 64;
/// Most residual blocks a configuration may have, over all stages.
pub const MAX_BLOCKS: usize = 1024;
/// Most learnable parameters a configuration may have (1 GiB of f32).
pub const MAX_PARAMS: u64 = 1 << 28;
/// Most activation values (summed over the execution plan) one image may need: 1 GiB of f32,
/// which bounds the memory of the CPU engine and of each image on the GPU.
pub const MAX_ACTIVATIONS: u64 = 1 << 28;

/// The names of the built-in configurations.
pub const BUILTIN: &[&str] = &[
    "as-resnet-w32",
    "as-resnet-w50",
    "as-resnet-w68",
    "asnet20-16x1",
    "asnet20-16x3",
    "asnet20-16x6",
    "asnet20-16x9",
    "asnet20-46x1",
    "asnet20-88x1",
];

impl ArchConfig {
    /// ImageNet AS-ResNet-wW (E = 1, 224x224 RGB input taken in BGR order, 1000 classes).
    pub fn as_resnet(w: usize) -> Self {
        Self {
            name: format!("as-resnet-w{w}"),
            in_channels: 3,
            input_size: [224, 224],
            classes: 1000,
            stem_width: w,
            stem_stride: 2,
            expansion: 1,
            stages: vec![
                StageConfig {
                    blocks: 1,
                    width: w,
                    stride: 1,
                },
                StageConfig {
                    blocks: 3,
                    width: w,
                    stride: 2,
                },
                StageConfig {
                    blocks: 4,
                    width: 2 * w,
                    stride: 2,
                },
                StageConfig {
                    blocks: 6,
                    width: 4 * w,
                    stride: 2,
                },
                StageConfig {
                    blocks: 3,
                    width: 8 * w,
                    stride: 2,
                },
            ],
            block: BlockKind::Asl,
            preprocess: imagenet_preprocess(),
        }
    }

    /// CIFAR ASNet-20 `WxE`: stem 3x3 stride 1, stages 3 x W, 3 x 2W (s2), 3 x 4W (s2), for
    /// `in_channels` x `size` x `size` input and `classes` classes.
    pub fn asnet20(w: usize, e: usize, in_channels: usize, size: usize, classes: usize) -> Self {
        let color = if in_channels == 1 {
            ColorOrder::Gray
        } else {
            ColorOrder::Rgb
        };
        Self {
            name: format!("asnet20-{w}x{e}"),
            in_channels,
            input_size: [size, size],
            classes,
            stem_width: w,
            stem_stride: 1,
            expansion: e,
            stages: vec![
                StageConfig {
                    blocks: 3,
                    width: w,
                    stride: 1,
                },
                StageConfig {
                    blocks: 3,
                    width: 2 * w,
                    stride: 2,
                },
                StageConfig {
                    blocks: 3,
                    width: 4 * w,
                    stride: 2,
                },
            ],
            block: BlockKind::Asl,
            preprocess: Preprocess {
                resize_short: None,
                crop: [size, size],
                color,
                mean: vec![127.5; in_channels],
                scale: vec![1.0 / 63.75; in_channels],
            },
        }
    }

    /// A built-in configuration by name (see [`BUILTIN`]); the ASNet-20 family is built for
    /// CIFAR-10 (3 x 32 x 32, 10 classes).
    pub fn builtin(name: &str) -> Result<Self> {
        if let Some(w) = name.strip_prefix("as-resnet-w")
            && let Ok(w @ (32 | 50 | 68)) = w.parse::<usize>()
        {
            return Ok(Self::as_resnet(w));
        }
        if let Some(we) = name.strip_prefix("asnet20-")
            && let Some((w, e)) = we.split_once('x')
            && let (Ok(w), Ok(e)) = (w.parse::<usize>(), e.parse::<usize>())
            && matches!((w, e), (16, 1 | 3 | 6 | 9) | (46, 1) | (88, 1))
        {
            return Ok(Self::asnet20(w, e, 3, 32, 10));
        }
        Err(Error::invalid(
            "config",
            format!(
                "unknown architecture `{name}`; built-in: {}",
                BUILTIN.join(", ")
            ),
        ))
    }

    /// Check that the configuration describes a network that can be built, naming the field
    /// that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| {
            Err(Error::Format {
                format: "model config",
                msg: format!("field `{field}`: {msg}"),
            })
        };
        const MAX: usize = 1 << 16;
        for (field, v, max) in [
            ("in_channels", self.in_channels, MAX),
            ("classes", self.classes, MAX),
            ("stem_width", self.stem_width, MAX),
            ("stem_stride", self.stem_stride, MAX),
            ("expansion", self.expansion, MAX),
            ("input_size[0]", self.input_size[0], MAX_INPUT_SIDE),
            ("input_size[1]", self.input_size[1], MAX_INPUT_SIDE),
        ] {
            if v == 0 || v > max {
                return bad(field, format!("must be in 1..={max}, found {v}"));
            }
        }
        if self.stages.is_empty() || self.stages.len() > MAX_STAGES {
            return bad(
                "stages",
                format!(
                    "must hold 1..={MAX_STAGES} stages, found {}",
                    self.stages.len()
                ),
            );
        }
        for (i, s) in self.stages.iter().enumerate() {
            for (name, v) in [
                ("blocks", s.blocks),
                ("width", s.width),
                ("stride", s.stride),
            ] {
                if v == 0 || v > MAX {
                    return bad(
                        &format!("stages[{i}].{name}"),
                        format!("must be in 1..={MAX}, found {v}"),
                    );
                }
            }
            if s.width.saturating_mul(self.expansion) > MAX {
                return bad(
                    &format!("stages[{i}].width"),
                    "width x expansion too large".into(),
                );
            }
        }
        let blocks: usize = self.stages.iter().map(|s| s.blocks).sum();
        if blocks > MAX_BLOCKS {
            return bad(
                "stages[].blocks",
                format!("{blocks} blocks in all; at most {MAX_BLOCKS} are supported"),
            );
        }
        // Sizes in u64, so that the checks cannot overflow (also on 32-bit targets).
        let params: u64 = self
            .params()
            .iter()
            .map(|(_, d)| d.iter().map(|&v| v as u64).product::<u64>())
            .sum();
        if params > MAX_PARAMS {
            return bad(
                "stages",
                format!("the network has {params} parameters; at most {MAX_PARAMS} are supported"),
            );
        }
        let activations: u64 = super::Plan::new(self, 1)
            .slots
            .iter()
            .map(|s| s.c as u64 * s.h as u64 * s.w as u64)
            .sum();
        if activations > MAX_ACTIVATIONS {
            return bad(
                "input_size",
                format!(
                    "one image needs {activations} activation values; at most \
                     {MAX_ACTIVATIONS} are supported"
                ),
            );
        }
        let p = &self.preprocess;
        if p.color.channels() != self.in_channels {
            return bad(
                "preprocess.color",
                format!(
                    "{:?} has {} channels but in_channels is {}",
                    p.color,
                    p.color.channels(),
                    self.in_channels
                ),
            );
        }
        if p.crop != self.input_size {
            return bad(
                "preprocess.crop",
                format!("{:?} differs from input_size {:?}", p.crop, self.input_size),
            );
        }
        if p.mean.len() != self.in_channels || p.scale.len() != self.in_channels {
            return bad(
                "preprocess.mean/scale",
                format!(
                    "need {} values each, found {} and {}",
                    self.in_channels,
                    p.mean.len(),
                    p.scale.len()
                ),
            );
        }
        if p.mean.iter().chain(&p.scale).any(|v| !v.is_finite()) {
            return bad("preprocess.mean/scale", "values must be finite".into());
        }
        if let Some(r) = p.resize_short
            && (r < p.crop[0].min(p.crop[1]) || r > 2 * MAX_INPUT_SIDE)
        {
            return bad(
                "preprocess.resize_short",
                format!("{r} is smaller than the crop or too large"),
            );
        }
        Ok(())
    }

    /// The residual blocks in execution order.
    pub fn blocks(&self) -> Vec<BlockSpec> {
        let mut out = Vec::new();
        let mut cin = self.stem_width;
        for stage in &self.stages {
            for b in 0..stage.blocks {
                let stride = if b == 0 { stage.stride } else { 1 };
                out.push(BlockSpec {
                    index: out.len(),
                    prefix: block_prefix(out.len()),
                    cin,
                    inner: stage.width * self.expansion,
                    width: stage.width,
                    stride,
                    projection: stride != 1 || cin != stage.width,
                    kind: self.block,
                });
                cin = stage.width;
            }
        }
        out
    }

    /// Channels entering the classifier head.
    pub fn head_channels(&self) -> usize {
        self.stages.last().map_or(self.stem_width, |s| s.width)
    }

    /// Every learnable tensor with its shape, in a fixed order: those of the network's
    /// [`Plan`](super::Plan) ([`Plan::params`](super::Plan::params)). Affine layers (inference
    /// BatchNorm) count as two tensors, `scale` and `bias`; the shift is `[2, C]` (`xpos` row,
    /// then `ypos` row).
    pub fn params(&self) -> Vec<(ParamId, Vec<usize>)> {
        super::Plan::new(self, 1).params()
    }

    /// [`ArchConfig::params`] by file name.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.params()
            .into_iter()
            .map(|(id, dims)| (id.name(), dims))
            .collect()
    }

    /// The affine (BatchNorm) layers, in execution order.
    pub fn norms(&self) -> Vec<Norm> {
        self.params()
            .into_iter()
            .filter_map(|(id, _)| match id {
                ParamId::Scale(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// Total number of learnable parameters.
    pub fn param_count(&self) -> usize {
        self.params()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Number of shift layers (none in a depthwise network).
    pub fn shift_layers(&self) -> usize {
        match self.block {
            BlockKind::Asl => self.stages.iter().map(|s| s.blocks).sum(),
            BlockKind::Depthwise => 0,
        }
    }
}
