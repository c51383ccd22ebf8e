// One slab of packed weights (conv1x1_pack.wgsl): row r (output channel row0 + r) holds input
// channels k0 + 4k .. k0 + 4k + 3 at wslab[r * kc / 4 + k], zero past Cin.
@group(0) @binding(2) var<uniform> wslab: array<vec4<f32>, 4096>;
// [Cout] each; bound to a placeholder when the affine flag is off.
@group(0) @binding(3) var<storage, read> scale: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
