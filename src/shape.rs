//! Tensor shapes.

use crate::error::{Error, Result};
use std::fmt;

/// Shape of an NCHW activation tensor: batch, channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Shape4 {
    /// Batch size.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
}

impl Shape4 {
    /// A new shape `[n, c, h, w]`.
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Self { n, c, h, w }
    }

    /// Number of elements.
    pub const fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    /// True when the shape holds no element.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels per channel plane (`h * w`).
    pub const fn plane(&self) -> usize {
        self.h * self.w
    }

    /// The dims as a slice-friendly array.
    pub const fn dims(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    /// Shape of the output of a stride-`s` layer without padding that keeps every `s`-th row
    /// and column starting at 0: `(h - 1) / s + 1` (docs/design.md §1). Channels are replaced by
    /// `c_out`.
    pub fn strided(&self, c_out: usize, stride: usize) -> Shape4 {
        Shape4::new(
            self.n,
            c_out,
            (self.h.max(1) - 1) / stride.max(1) + 1,
            (self.w.max(1) - 1) / stride.max(1) + 1,
        )
    }

    /// Interpret a dims slice as NCHW.
    pub fn from_dims(op: &'static str, what: &str, dims: &[usize]) -> Result<Self> {
        match dims {
            [n, c, h, w] => Ok(Shape4::new(*n, *c, *h, *w)),
            _ => Err(Error::shape(
                op,
                what,
                "a 4-d NCHW tensor",
                format!("{dims:?}"),
            )),
        }
    }
}

impl fmt::Display for Shape4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}, {}, {}]", self.n, self.c, self.h, self.w)
    }
}

/// Check that a stride is usable.
pub(crate) fn check_stride(op: &'static str, stride: usize) -> Result<()> {
    if stride == 0 {
        return Err(Error::invalid(op, "stride must be at least 1, found 0"));
    }
    Ok(())
}

/// Check that an activation shape is non-empty and that its element count fits in `usize`
/// (so that [`Shape4::len`] cannot wrap around).
pub(crate) fn check_nonempty(op: &'static str, what: &str, s: Shape4) -> Result<()> {
    let len = [s.n, s.c, s.h, s.w]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    match len {
        None => Err(Error::shape(
            op,
            what,
            "a shape whose element count fits in memory",
            s,
        )),
        Some(0) => Err(Error::shape(op, what, "a non-empty tensor", s)),
        Some(_) => Ok(()),
    }
}
