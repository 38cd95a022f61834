//! Writes the proxy fuzz target's seeds (`sip_user::proxy::exercise::seeds`) into the folder
//! given as the argument; `cargo xtask fuzz` runs it before fuzzing, so nothing generated is
//! committed.

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .ok_or_else(|| std::io::Error::other("usage: fuzz_seeds <folder>"))?;
    std::fs::create_dir_all(&dir)?;
    for (name, seed) in sip_user::proxy::exercise::seeds() {
        std::fs::write(dir.join(name), seed)?;
    }
    Ok(())
}
