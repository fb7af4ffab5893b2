//! Builds the XDP program (`collector-ebpf`) with the nightly toolchain and bpf-linker through aya-build,
//! and leaves the object in `OUT_DIR/steer` for `include_bytes_aligned!`.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root_dir = format!("{manifest_dir}/../collector-ebpf");
    let ebpf = aya_build::Package {
        name: "collector-ebpf",
        root_dir: &root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default()).context(
        "building the eBPF program failed; run `cargo xtask setup` to install the eBPF toolchain",
    )
}
