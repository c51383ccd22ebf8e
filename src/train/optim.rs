//! The optimiser's rule, once: which parameters learn and how ([`SgdRule::of`]), and its host
//! implementation ([`sgd_update`]), the CPU twin of `shaders/optimizer.wgsl` (`sgd`). The CPU
//! backend ([`CpuBackend`](super::CpuBackend)) runs this function; the GPU backend runs the
//! kernel.

use super::TrainSettings;
use crate::error::{Error, Result};
use crate::model::ParamId;

/// How one parameter tensor learns: SGD with Nesterov momentum (PyTorch's form), weight decay
/// on convolution and classifier weights only, and for the shifts the normalized gradient at
/// `shift_lr_mult` times the rate without decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdRule {
    /// Multiplier of the step's learning rate.
    pub lr_mult: f32,
    /// Nesterov momentum.
    pub momentum: f32,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f32,
    /// Whether the gradient is a `[2, C]` shift gradient normalized per channel first.
    pub normalize_shift: bool,
}

impl SgdRule {
    /// The rule of parameter `id` under `settings`; `None` for a frozen parameter (the shifts
    /// of every [`ShiftMode`](super::ShiftMode) that does not
    /// [learn](super::ShiftMode::learns), and the stem's and the first
    /// [`frozen_blocks`](super::TrainSettings::frozen_blocks) blocks' tensors), which neither
    /// moves nor gathers momentum.
    pub fn of(settings: &TrainSettings, id: ParamId) -> Option<Self> {
        let is_shift = matches!(id, ParamId::Shift(_));
        if is_shift && !settings.shift.learns() {
            return None;
        }
        // The stem and the first `frozen_blocks` blocks, when fine-tuning only later layers.
        let frozen_layer = match (id, id.block()) {
            (ParamId::StemWeight, _) => settings.frozen_blocks > 0,
            (_, Some(i)) => i < settings.frozen_blocks,
            (_, None) => false,
        };
        if frozen_layer {
            return None;
        }
        Some(Self {
            lr_mult: if is_shift {
                settings.shift_lr_mult
            } else {
                1.0
            },
            momentum: settings.momentum,
            weight_decay: if id.is_weight() {
                settings.weight_decay
            } else {
                0.0
            },
            normalize_shift: is_shift,
        })
    }
}

/// One optimiser step on the host, in place: with `g` the gradient (normalized per channel
/// first under [`SgdRule::normalize_shift`], as [`crate::cpu::normalize_shift_grad`] does) plus
/// `weight_decay * w`, `v = momentum v + g; w -= lr lr_mult (g + momentum v)`.
///
/// # Errors
/// [`Error::Shape`] when the lengths differ or a shift gradient has an odd length.
pub fn sgd_update(rule: &SgdRule, lr: f32, w: &mut [f32], v: &mut [f32], g: &[f32]) -> Result<()> {
    if v.len() != w.len() || g.len() != w.len() {
        return Err(Error::shape(
            "sgd",
            "gradient and velocity",
            format!("{} elements each", w.len()),
            format!("{} and {}", g.len(), v.len()),
        ));
    }
    let mut normalized;
    let g = if rule.normalize_shift {
        normalized = g.to_vec();
        crate::cpu::normalize_shift_grad(&mut normalized)?;
        &normalized[..]
    } else {
        g
    };
    let rate = lr * rule.lr_mult;
    for i in 0..w.len() {
        let gi = g[i] + rule.weight_decay * w[i];
        v[i] = rule.momentum * v[i] + gi;
        w[i] -= rate * (gi + rule.momentum * v[i]);
    }
    Ok(())
}
