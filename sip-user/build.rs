//! Builds the XDP program (`sip-ebpf`) and embeds it in the binary.
//!
//! Why not aya-build: it hardcodes its rustflags (we need `--cpu-features` for bpf-linker) and
//! builds a copy of the object per profile. Here one nested `cargo +nightly build` in the
//! `sip-ebpf` folder (which carries its own toolchain file and `.cargo/config.toml`) writes to
//! `target/ebpf`, shared by debug, release and test builds; a warm rebuild takes under a second.
//!
//! Without the eBPF toolchain (bpf-linker, nightly rust-src) a placeholder is embedded, so plain
//! `cargo build`/`clippy` work anywhere, and loading fails with a message that says to run
//! `cargo xtask setup`. `SIP_FASTPATH_REQUIRE_EBPF=1` (set by `cargo xtask build`) turns a
//! missing toolchain into a build error instead.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.parent().context("sip-user has no parent folder")?;
    let out = PathBuf::from(env::var("OUT_DIR")?).join("sip-ebpf.o");
    for p in [
        "sip-ebpf/src",
        "sip-ebpf/Cargo.toml",
        "sip-ebpf/.cargo/config.toml",
        "sip-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=SIP_FASTPATH_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=PATH");
    let require = env::var_os("SIP_FASTPATH_REQUIRE_EBPF").is_some_and(|v| v == "1");

    match build_ebpf(root) {
        Ok(object) => {
            std::fs::copy(&object, &out)
                .with_context(|| format!("copying {} to {}", object.display(), out.display()))?;
        }
        Err(e) if !require => {
            println!(
                "cargo:warning=XDP program not built ({e:#}); embedding a placeholder. \
                 Run `cargo xtask setup` to install the eBPF toolchain."
            );
            std::fs::write(&out, b"")?;
        }
        Err(e) => return Err(e.context("building the XDP program (sip-ebpf)")),
    }
    Ok(())
}

fn build_ebpf(root: &Path) -> anyhow::Result<PathBuf> {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("bpf-linker") {
        bail!("bpf-linker is not on PATH");
    }
    let target_dir = root.join("target/ebpf");
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--release",
        "--target-dir",
    ])
    .arg(&target_dir)
    .current_dir(root.join("sip-ebpf"));
    // The outer cargo's variables would pin the stable toolchain and its flags on the nested
    // build; drop everything cargo sets for build scripts.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_owned = (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key.starts_with("DEP_")
            || matches!(
                key,
                "RUSTUP_TOOLCHAIN"
                    | "RUSTFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if cargo_owned {
            cmd.env_remove(key);
        }
    }
    let output = cmd
        .output()
        .context("running `rustup run nightly cargo build` for sip-ebpf")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("the eBPF build failed:\n{}", tail.join("\n"));
    }
    Ok(target_dir.join("bpfel-unknown-none/release/sip-ebpf"))
}
