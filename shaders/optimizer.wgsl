// The training state's update, in place on the device: `sgd` is one parameter tensor's
// Nesterov SGD step (PyTorch's form, `v = m v + g; w -= lr (g + m v)` with `g` the gradient
// plus weight decay), with the Active Shift Layer's normalized shift gradient when
// `channels` > 0 (each channel's (dx, dy) gradient scaled to unit length first);
// `running_stats` is BatchNorm's running-statistics update from one batch's statistics (the
// two entry points of build.rs's KERNELS, `sgd` with the define SGD).
// One invocation per element on a 2-d grid of workgroups (linear index
// wg.y * groups.x + wg.x). CPU twins: `train::optim::sgd_update` and
// `train::ops::update_running_stats`.

// Its Rust twin `OptimizerParams` is generated from this by build.rs (from naga\'s layout).
struct OptimizerParams {
    // Elements updated (sgd), channels (running_stats).
    len: u32,
    // Where the gradient (sgd) or the batch statistics (running_stats) start in their buffer.
    offset: u32,
    // 0, or the channel count C of a `[2, C]` shift gradient to normalize.
    channels: u32,
    _pad0: u32,
    // The learning rate is `lr[0] * lr_mult`.
    lr_mult: f32,
    momentum: f32,
    weight_decay: f32,
    // running_stats: the number of values per channel the batch statistics were taken over
    // (m), and max(m - 1, 1): the variance is made unbiased as `var * m / (m - 1)`.
    count: f32,
    divisor: f32,
    _pad1: f32,
    _pad2: f32,
    _pad3: f32,
}

const WG_SIZE: u32 = 256u;

#bindings
0 params: uniform OptimizerParams
// The step's base learning rate (one value, written by the host each step).
1 lr: read f32
// sgd: the gradient; running_stats: the batch statistics `[3, C]` (mean, biased variance,
// inverse standard deviation).
2 grad: read f32
// sgd: the parameter; running_stats: the running mean.
3 weight: read_write f32
// sgd: the momentum buffer; running_stats: the running variance.
4 velocity: read_write f32
#endbindings

#import element

@compute @workgroup_size(WG_SIZE)
fn main(
#include element_args
) {
#ifdef SGD
    let i = element(wg, groups, li);
    if (i >= params.len) {
        return;
    }
    var g = grad[params.offset + i];
    let c = params.channels;
    if (c > 0u) {
        // The same arithmetic as `cpu::normalize_shift_grad`: divide by the larger magnitude
        // first so squaring neither underflows nor overflows; a zero pair stays zero.
        let k = i % c;
        let gx = grad[params.offset + k];
        let gy = grad[params.offset + c + k];
        let m = max(abs(gx), abs(gy));
        if (m > 0.0) {
            let a = gx / m;
            let b = gy / m;
            let norm = sqrt(a * a + b * b);
            g = select(b, a, i < c) / norm;
        }
    }
    let w = weight[i];
    let gi = g + params.weight_decay * w;
    let v = params.momentum * velocity[i] + gi;
    velocity[i] = v;
    let rate = lr[0] * params.lr_mult;
    weight[i] = w - rate * (gi + params.momentum * v);
#else
    let ch = element(wg, groups, li);
    let c = params.len;
    if (ch >= c) {
        return;
    }
    let mean = grad[params.offset + ch];
    let var_b = grad[params.offset + c + ch];
    weight[ch] = 0.9 * weight[ch] + 0.1 * mean;
    velocity[ch] = 0.9 * velocity[ch] + 0.1 * var_b * params.count / params.divisor;
#endif
}
