//! Importing the authors' Caffe AS-ResNet weights into an activeshift [`Model`].

use super::config::ArchConfig;
use super::file::{HostTensor, Model};
use super::params::{Norm, ParamId};
use crate::caffe::CaffeLayer;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

fn err(msg: String) -> Error {
    Error::Format {
        format: "caffemodel",
        msg,
    }
}

struct Layers<'a> {
    layers: &'a [CaffeLayer],
}

impl<'a> Layers<'a> {
    fn index(&self, name: &str) -> Result<usize> {
        self.layers
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| err(format!("layer `{name}` is missing")))
    }

    /// Blob `b` of layer `name`, checked to hold `dims.product()` values; returned with `dims`.
    fn blob(&self, name: &str, b: usize, dims: &[usize]) -> Result<HostTensor> {
        let layer = &self.layers[self.index(name)?];
        let blob = layer.blobs.get(b).ok_or_else(|| {
            err(format!(
                "layer `{name}` has {} blobs, blob {b} is needed",
                layer.blobs.len()
            ))
        })?;
        let want: usize = dims.iter().product();
        if blob.data.len() != want {
            return Err(err(format!(
                "layer `{name}` blob {b}: expected {dims:?} ({want} values), found shape {:?}",
                blob.shape
            )));
        }
        HostTensor::new(dims.to_vec(), blob.data.clone())
    }
}

/// Convert the layers of an authors' AS-ResNet `.caffemodel` (see [`crate::caffe`]) into a
/// model. The width (w32, w50, w68) is recognised from the stem's blob shape; every layer the
/// architecture needs must be present with the right shape. `labels` are the 1000 ImageNet
/// class names (or empty).
pub fn import_caffe(layers: &[CaffeLayer], labels: Vec<String>) -> Result<Model> {
    let l = Layers { layers };
    let stem = &layers[l.index("conv0")?];
    let w = match stem.blobs.first().map(|b| b.shape.as_slice()) {
        Some([w @ (32 | 50 | 68), 3, 3, 3]) => *w,
        other => {
            return Err(err(format!(
                "layer `conv0`: expected the stem of AS-ResNet-w32/w50/w68 ([W, 3, 3, 3] with W \
                 in 32, 50, 68), found blob shape {other:?}"
            )));
        }
    };
    let config = ArchConfig::as_resnet(w);
    let mut params = BTreeMap::new();
    for (id, dims) in config.params() {
        // A tensor is one blob, or the shift's two (`xpos`, then `ypos`) stacked as its rows.
        let mut data = Vec::new();
        let sources = caffe_blobs(&config, id);
        if sources.is_empty() {
            return Err(err(format!("no layer of the authors' models holds `{id}`")));
        }
        let part = [dims[dims.len() - 1]];
        for (layer, blob) in &sources {
            let t = match id {
                ParamId::Shift(_) => l.blob(layer, *blob, &part)?,
                _ => l.blob(layer, *blob, &dims)?,
            };
            data.extend(t.data);
        }
        params.insert(id.name(), HostTensor::new(dims, data)?);
    }
    Model::new(config, labels, params)
}

/// Where the authors' Caffe model keeps tensor `id` of AS-ResNet `config`: `(layer, blob)`
/// pairs, one per tensor (two for a shift: its `xpos` and `ypos` rows). The authors name a
/// block by stage and position (`{stage}_{k}`, stage 0's only block `0_0`, the others' from
/// 1), its layers `scale{tag}` (pre-activation affine), `conv{tag}/1` (expand), `scale{tag}/1`,
/// `shift{tag}/2`, `conv{tag}/3` (reduce) and the stage's projection `conv/shortcut{stage}`.
/// In the published weights BatchNorm is already folded into the Scale layers; the BatchNorm
/// blobs stored beside them are ignored (docs/design.md §4; folding them in again sends the cat
/// photo to class 490).
fn caffe_blobs(config: &ArchConfig, id: ParamId) -> Vec<(String, usize)> {
    // Stage and position within the stage of block `i`.
    let place = |i: usize| {
        let mut first = 0;
        for (s, stage) in config.stages.iter().enumerate() {
            if i < first + stage.blocks {
                return (s, i - first);
            }
            first += stage.blocks;
        }
        (config.stages.len(), 0)
    };
    let tag = |i: usize| match place(i) {
        (0, _) => "0_0".to_string(),
        (s, k) => format!("{s}_{}", k + 1),
    };
    let one = |layer: String, blob: usize| vec![(layer, blob)];
    match id {
        ParamId::StemWeight => one("conv0".into(), 0),
        ParamId::Scale(Norm::Pre(i)) => one(format!("scale{}", tag(i)), 0),
        ParamId::Bias(Norm::Pre(i)) => one(format!("scale{}", tag(i)), 1),
        ParamId::Expand(i) => one(format!("conv{}/1", tag(i)), 0),
        ParamId::Scale(Norm::Mid(i)) => one(format!("scale{}/1", tag(i)), 0),
        ParamId::Bias(Norm::Mid(i)) => one(format!("scale{}/1", tag(i)), 1),
        ParamId::Shift(i) => {
            let layer = format!("shift{}/2", tag(i));
            vec![(layer.clone(), 0), (layer, 1)]
        }
        ParamId::Reduce(i) => one(format!("conv{}/3", tag(i)), 0),
        ParamId::Shortcut(i) => one(format!("conv/shortcut{}", place(i).0), 0),
        ParamId::Scale(Norm::Head) => one("scale/bnlast".into(), 0),
        ParamId::Bias(Norm::Head) => one("scale/bnlast".into(), 1),
        ParamId::FcWeight => one("fc/linear".into(), 0),
        ParamId::FcBias => one("fc/linear".into(), 1),
        // AS-ResNet has no depthwise convolution: no layer holds one.
        ParamId::Depthwise(_) => Vec::new(),
    }
}
