// The GEMMs' scalar epilogue: output value `acc` of channel `co`, stored at y[idx] after, as
// params.flags says, adding what an earlier K chunk left there, the per-channel affine
// (scale[co] * v + bias[co]), the residual add (residual[idx]) and ReLU. Needs `params` (with
// `flags`), `scale`, `bias`, `residual` and `y` (all of f32) in the kernel that imports it.

#import gemm_flags

fn store_output(idx: u32, co: u32, acc: f32) {
    var v = acc;
    if ((params.flags & FLAG_ACCUMULATE) != 0u) {
        v += y[idx];
    }
    if ((params.flags & FLAG_AFFINE) != 0u) {
        v = scale[co] * v + bias[co];
    }
    if ((params.flags & FLAG_RESIDUAL) != 0u) {
        v += residual[idx];
    }
    if ((params.flags & FLAG_RELU) != 0u) {
        v = max(v, 0.0);
    }
    y[idx] = v;
}
