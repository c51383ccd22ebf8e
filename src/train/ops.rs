//! The training half of the fast CPU op set, under the names the trainer and its tests use:
//! every operation lives once, in [`crate::cpu::fast`].

pub use crate::cpu::fast::{
    BN_EPS, BnMode, bn_backward, bn_frozen, bn_relu_backward, bn_relu_backward_with,
    bn_relu_frozen, bn_relu_train, bn_train, channel_sum, conv1x1_backward_input,
    conv1x1_backward_weight, conv3x3_backward_input, conv3x3_backward_weight,
    depthwise3x3_backward, fold_bn, shift_backward, update_running_stats,
};
