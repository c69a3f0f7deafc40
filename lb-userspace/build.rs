//! Compiles the XDP programs of `lb-ebpf` for the BPF target (nightly + bpf-linker, through
//! aya-build) and leaves them in OUT_DIR, where `src/objects.rs` embeds them.
//!
//! With `AYA_BUILD_SKIP=1` (clippy or docs on a machine without bpf-linker) empty placeholders are
//! written instead; loading them fails at run time with a clear error.
use anyhow::{Context as _, anyhow};

const PROGRAMS: [&str; 3] = ["lb-ebpf", "xdp-baseline", "xdp-pass"];

fn main() -> anyhow::Result<()> {
    let out_dir = std::env::var("OUT_DIR")?;
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if skip {
        for program in PROGRAMS {
            std::fs::write(format!("{out_dir}/{program}"), [])?;
        }
        return Ok(());
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "lb-ebpf")
        .ok_or_else(|| anyhow!("lb-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?;
    let ebpf_package = aya_build::Package {
        name: name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf_package], aya_build::Toolchain::default())
}
