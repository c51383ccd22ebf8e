// The bits of the GEMMs' `flags` (GemmParams and Conv1x1Params alike; the Rust side's
// FLAG_* constants in src/gpu/kernels/conv1x1.rs): the epilogue's steps, in the order
// `store_output` (gemm_store_scalar.wgsl) and gemm_epilogue_vec4.wgsl apply them.
const FLAG_AFFINE: u32 = 1u;
const FLAG_RESIDUAL: u32 = 2u;
const FLAG_RELU: u32 = 4u;
// Add what an earlier K chunk left in y (the register-tiled GEMMs' split K; never set for the
// others).
const FLAG_ACCUMULATE: u32 = 8u;
