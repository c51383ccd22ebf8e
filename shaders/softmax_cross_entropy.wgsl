// Softmax cross-entropy of a batch of logits against integer labels, its gradient, and the
// gradient of the classifier's bias. CPU twin: `train::score` (through `CpuBackend`).
//
//   p = softmax(logits[n]),   loss[n] = log(sum exp(logits[n] - max)) + max - logits[n, label]
//   dlogits[n, k] = (p[k] - [k == label]) / N          (the gradient of the mean loss)
//   dbias[k] = sum over n of dlogits[n, k]             (`bias_grad`, after `main`)
//
// `main` runs one invocation per image and also writes whether the top-1 class (the last of
// equal maxima, as the CPU twin) is the label; `bias_grad` one invocation per class, adding the
// images in order. Labels are checked on the host (< K).

// Its Rust twin `CeParams` is generated from this by build.rs (from naga\'s layout).
struct CeParams {
    n: u32,
    k: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG_SIZE: u32 = 64u;

#bindings
0 params: uniform CeParams
// [N, K]
1 logits: read f32
// [N]
2 labels: read u32
// [N, K]
3 dlogits: read_write f32
// [N, 2]: loss, then 1.0 if the top-1 class is the label (else 0.0).
4 per_image: read_write f32
// [K]
5 dbias: read_write f32
#endbindings

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.n) {
        return;
    }
    let row = i * params.k;
    let label = labels[i];
    var best = logits[row];
    var arg = 0u;
    for (var j = 1u; j < params.k; j = j + 1u) {
        let v = logits[row + j];
        if (v >= best) {
            best = v;
            arg = j;
        }
    }
    var sum = 0.0;
    for (var j = 0u; j < params.k; j = j + 1u) {
        sum = sum + exp(logits[row + j] - best);
    }
    let inv_n = 1.0 / f32(params.n);
    for (var j = 0u; j < params.k; j = j + 1u) {
        var p = exp(logits[row + j] - best) / sum;
        if (j == label) {
            p = p - 1.0;
        }
        dlogits[row + j] = p * inv_n;
    }
    per_image[2u * i] = log(sum) + best - logits[row + label];
    per_image[2u * i + 1u] = select(0.0, 1.0, arg == label);
}

@compute @workgroup_size(WG_SIZE)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= params.k) {
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < params.n; i = i + 1u) {
        s = s + dlogits[i * params.k + j];
    }
    dbias[j] = s;
}
