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

    /// A Scale layer as `(scale, bias)` of `c` channels. In the published weights BatchNorm
    /// is already folded into the Scale layers; the BatchNorm blobs stored beside them are
    /// ignored (docs/design.md §4; folding them in again sends the cat photo to class 490).
    fn affine(&self, name: &str, c: usize) -> Result<(HostTensor, HostTensor)> {
        Ok((self.blob(name, 0, &[c])?, self.blob(name, 1, &[c])?))
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
    let mut put = |id: ParamId, t: HostTensor| params.insert(id.name(), t);
    put(ParamId::StemWeight, l.blob("conv0", 0, &[w, 3, 3, 3])?);
    let blocks = config.blocks();
    let mut k = 0;
    for (s, stage) in config.stages.iter().enumerate() {
        for b in 0..stage.blocks {
            let blk = &blocks[k];
            k += 1;
            // The authors number stage 0's only block `0_0` and the others from 1.
            let tag = if s == 0 {
                "0_0".to_string()
            } else {
                format!("{s}_{}", b + 1)
            };
            let i = blk.index;
            let (pre_s, pre_b) = l.affine(&format!("scale{tag}"), blk.cin)?;
            put(ParamId::Scale(Norm::Pre(i)), pre_s);
            put(ParamId::Bias(Norm::Pre(i)), pre_b);
            put(
                ParamId::Expand(i),
                l.blob(&format!("conv{tag}/1"), 0, &[blk.inner, blk.cin])?,
            );
            let (mid_s, mid_b) = l.affine(&format!("scale{tag}/1"), blk.inner)?;
            put(ParamId::Scale(Norm::Mid(i)), mid_s);
            put(ParamId::Bias(Norm::Mid(i)), mid_b);
            let shift_layer = format!("shift{tag}/2");
            let mut shift = l.blob(&shift_layer, 0, &[blk.inner])?.data; // xpos
            shift.extend(l.blob(&shift_layer, 1, &[blk.inner])?.data); // ypos
            put(
                ParamId::Shift(i),
                HostTensor::new(vec![2, blk.inner], shift)?,
            );
            put(
                ParamId::Reduce(i),
                l.blob(&format!("conv{tag}/3"), 0, &[blk.width, blk.inner])?,
            );
            if blk.projection {
                put(
                    ParamId::Shortcut(i),
                    l.blob(&format!("conv/shortcut{s}"), 0, &[blk.width, blk.cin])?,
                );
            }
        }
    }
    let c = config.head_channels();
    let (head_s, head_b) = l.affine("scale/bnlast", c)?;
    put(ParamId::Scale(Norm::Head), head_s);
    put(ParamId::Bias(Norm::Head), head_b);
    put(
        ParamId::FcWeight,
        l.blob("fc/linear", 0, &[config.classes, c])?,
    );
    put(ParamId::FcBias, l.blob("fc/linear", 1, &[config.classes])?);
    Model::new(config, labels, params)
}
