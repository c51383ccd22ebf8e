//! Typed names of a network's parameter tensors. Code refers to a parameter by its
//! [`ParamId`]; the names the tensors carry in model files and checkpoints
//! (`blocks.{i}.expand.weight`, `head.scale`, ...) are produced here and nowhere else.

use std::fmt;

/// An affine layer (inference BatchNorm; BatchNorm with batch statistics in training).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Norm {
    /// The pre-activation of block `i`.
    Pre(usize),
    /// The affine after block `i`'s expanding 1x1 convolution.
    Mid(usize),
    /// The affine before the classifier.
    Head,
}

impl Norm {
    /// The layer's name prefix (`blocks.3.pre`, `head`).
    pub fn prefix(self) -> String {
        match self {
            Norm::Pre(i) => format!("{}.pre", block_prefix(i)),
            Norm::Mid(i) => format!("{}.mid", block_prefix(i)),
            Norm::Head => "head".into(),
        }
    }

    /// Name of its BatchNorm running mean in checkpoints.
    pub fn running_mean_name(self) -> String {
        format!("{}.running_mean", self.prefix())
    }

    /// Name of its BatchNorm running variance in checkpoints.
    pub fn running_var_name(self) -> String {
        format!("{}.running_var", self.prefix())
    }
}

/// One learnable tensor of a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParamId {
    /// The 3x3 stem convolution `[W, Cin, 3, 3]`.
    StemWeight,
    /// An affine layer's multiplier (BatchNorm's gamma) `[C]`.
    Scale(Norm),
    /// An affine layer's offset (BatchNorm's beta) `[C]`.
    Bias(Norm),
    /// Block `i`'s expanding 1x1 convolution `[inner, cin]`.
    Expand(usize),
    /// Block `i`'s shifts `[2, inner]` (xpos row, then ypos row).
    Shift(usize),
    /// Block `i`'s 3x3 depthwise convolution `[inner, 1, 3, 3]` (the depthwise baseline).
    Depthwise(usize),
    /// Block `i`'s reducing 1x1 convolution `[width, inner]`.
    Reduce(usize),
    /// Block `i`'s projection shortcut `[width, cin]`.
    Shortcut(usize),
    /// The classifier's weight `[classes, C]`.
    FcWeight,
    /// The classifier's bias `[classes]`.
    FcBias,
}

/// Name prefix of block `i`'s tensors (`blocks.{i}`).
pub fn block_prefix(i: usize) -> String {
    format!("blocks.{i}")
}

impl ParamId {
    /// The tensor's name in model files and checkpoints.
    pub fn name(self) -> String {
        let b = block_prefix;
        match self {
            ParamId::StemWeight => "stem.weight".into(),
            ParamId::Scale(n) => format!("{}.scale", n.prefix()),
            ParamId::Bias(n) => format!("{}.bias", n.prefix()),
            ParamId::Expand(i) => format!("{}.expand.weight", b(i)),
            ParamId::Shift(i) => format!("{}.shift", b(i)),
            ParamId::Depthwise(i) => format!("{}.depthwise.weight", b(i)),
            ParamId::Reduce(i) => format!("{}.reduce.weight", b(i)),
            ParamId::Shortcut(i) => format!("{}.shortcut.weight", b(i)),
            ParamId::FcWeight => "fc.weight".into(),
            ParamId::FcBias => "fc.bias".into(),
        }
    }

    /// The residual block the tensor belongs to: `Some(i)` for block `i`'s, `None` for the
    /// stem's (before every block) and the head's and classifier's (after them).
    pub fn block(self) -> Option<usize> {
        match self {
            ParamId::Expand(i)
            | ParamId::Shift(i)
            | ParamId::Depthwise(i)
            | ParamId::Reduce(i)
            | ParamId::Shortcut(i)
            | ParamId::Scale(Norm::Pre(i) | Norm::Mid(i))
            | ParamId::Bias(Norm::Pre(i) | Norm::Mid(i)) => Some(i),
            _ => None,
        }
    }

    /// A convolution or classifier weight (what weight decay applies to).
    pub fn is_weight(self) -> bool {
        matches!(
            self,
            ParamId::StemWeight
                | ParamId::Expand(_)
                | ParamId::Depthwise(_)
                | ParamId::Reduce(_)
                | ParamId::Shortcut(_)
                | ParamId::FcWeight
        )
    }
}

/// In JSON (the plan a PyTorch twin reads, `activeshift info --plan-json`): its name.
impl serde::Serialize for ParamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// In JSON: its name prefix (`blocks.3.pre`, `head`).
impl serde::Serialize for Norm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.prefix())
    }
}

impl fmt::Display for ParamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}
