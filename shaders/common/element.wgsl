// The flat index of invocation `li` of workgroup `wg` in a 2D dispatch of `groups` workgroups
// of WG_SIZE invocations (a 1D index space wider than one dispatch dimension allows). Needs
// WG_SIZE in the kernel that imports it.

fn element(wg: vec3<u32>, groups: vec3<u32>, li: u32) -> u32 {
    return (wg.y * groups.x + wg.x) * WG_SIZE + li;
}
