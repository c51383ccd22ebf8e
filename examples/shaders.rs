//! Writes every kernel as the library runs it (`activeshift::gpu::kernels::SHADERS`, produced
//! by build.rs from `shaders/`) into a directory, one `.wgsl` file each: for other WGSL
//! compilers (the browser test hands them to Chromium's Tint) and for reading.
//!
//!     cargo run --release --example shaders -- DIR

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: cargo run --release --example shaders -- DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    for (name, src) in activeshift::gpu::kernels::SHADERS {
        std::fs::write(dir.join(name), src)?;
    }
    println!(
        "{} kernels written to {}",
        activeshift::gpu::kernels::SHADERS.len(),
        dir.display()
    );
    Ok(())
}
