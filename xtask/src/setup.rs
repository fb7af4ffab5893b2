//! `cargo xtask setup`: check each piece of the eBPF toolchain and test tooling, install only
//! what is missing, and say in one sentence what to do when something cannot be installed.
//!
//! Split in two: [`Inventory::probe`] asks the machine what is there (rustup, dpkg-query,
//! bpf-linker), and [`plan`] turns an inventory into [`Step`]s, pure and unit-tested.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{cargo, run_status};

/// Debian packages: LLVM 22 for bpf-linker, compression libraries it links, and test tools
/// (tshark is the decode oracle; softflowd is a real NetFlow/IPFIX exporter for the tests;
/// Open vSwitch exports NetFlow v5, IPFIX and sFlow in the OVS tests, which run private daemons;
/// pmacct's pmacctd with its sfprobe plugin is a second live sFlow exporter).
pub const DEBIAN_PACKAGES: [&str; 11] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "ethtool",
    "tshark",
    "tcpdump",
    "softflowd",
    "openvswitch-switch",
    "pmacct",
];

/// bpf-linker release the eBPF build is pinned to.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Where Debian's LLVM 22 lives; without it bpf-linker's build finds LLVM 14 and fails.
pub const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// What the machine has, as far as setup cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    /// `rustup` is on PATH.
    pub rustup: bool,
    /// The nightly toolchain is installed.
    pub nightly: bool,
    /// Nightly has the `rust-src` component.
    pub rust_src: bool,
    /// `dpkg-query` and `apt-get` are on PATH (a Debian-like system).
    pub apt: bool,
    /// The process runs as root (apt-get install needs it).
    pub root: bool,
    /// Debian packages from [`DEBIAN_PACKAGES`] that are not installed.
    pub missing_packages: Vec<&'static str>,
    /// Version `bpf-linker --version` reports, if it runs.
    pub bpf_linker: Option<String>,
}

/// One thing setup does, or one thing the user must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `rustup toolchain install nightly --profile minimal --component rust-src`.
    InstallNightly,
    /// `rustup component add rust-src --toolchain nightly`.
    AddRustSrc,
    /// `apt-get update` then `apt-get install -y` of these packages.
    AptInstall(Vec<&'static str>),
    /// `cargo install bpf-linker@0.13.0 ...` with `LLVM_PREFIX`.
    InstallBpfLinker,
    /// Cannot be done from here: the sentence says what the user must do.
    Manual(String),
}

impl Inventory {
    /// Ask the machine.
    pub fn probe() -> Self {
        let rustup = succeeds(Command::new("rustup").arg("--version"));
        let installed_components = output(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            "nightly",
        ]));
        let nightly = installed_components.is_some();
        let rust_src = installed_components
            .as_deref()
            .is_some_and(|list| list.lines().any(|line| line.trim() == "rust-src"));
        let apt = succeeds(Command::new("dpkg-query").arg("--version"))
            && succeeds(Command::new("apt-get").arg("--version"));
        let missing_packages = if apt {
            DEBIAN_PACKAGES
                .into_iter()
                .filter(|package| !package_installed(package))
                .collect()
        } else {
            DEBIAN_PACKAGES.to_vec()
        };
        let bpf_linker = output(Command::new("bpf-linker").arg("--version")).map(|text| {
            text.trim()
                .trim_start_matches("bpf-linker")
                .trim()
                .to_owned()
        });
        Inventory {
            rustup,
            nightly,
            rust_src,
            apt,
            root: is_root(),
            missing_packages,
            bpf_linker,
        }
    }
}

/// What to do, in order, to go from `inventory` to a complete setup. Empty when nothing is missing.
pub fn plan(inventory: &Inventory) -> Vec<Step> {
    let mut steps = Vec::new();
    if !inventory.rustup {
        steps.push(Step::Manual(
            "rustup is not installed: install it from https://rustup.rs, then run `cargo xtask setup` again".into(),
        ));
    } else if !inventory.nightly {
        steps.push(Step::InstallNightly);
    } else if !inventory.rust_src {
        steps.push(Step::AddRustSrc);
    }
    let packages_ready = inventory.missing_packages.is_empty();
    if !packages_ready {
        let list = inventory.missing_packages.join(" ");
        if !inventory.apt {
            steps.push(Step::Manual(format!(
                "this is not a Debian-like system (no apt-get/dpkg-query): install the equivalents of {list} with your package manager"
            )));
        } else if !inventory.root {
            steps.push(Step::Manual(format!(
                "installing Debian packages needs root: run `apt-get update && apt-get install -y {list}` as root, then `cargo xtask setup` again"
            )));
        } else {
            steps.push(Step::AptInstall(inventory.missing_packages.clone()));
        }
    }
    if inventory.bpf_linker.as_deref() != Some(BPF_LINKER_VERSION) {
        // bpf-linker builds against the LLVM 22 packages; if they cannot be installed, the
        // Manual step above already says what to do first.
        steps.push(Step::InstallBpfLinker);
    }
    steps
}

/// Whether [`plan`] has anything to do.
pub fn is_complete(inventory: &Inventory) -> bool {
    plan(inventory).is_empty()
}

/// Check, then install what is missing, printing each step. Fails (after printing the
/// sentences) when something must be done by hand.
pub fn setup() -> anyhow::Result<()> {
    let inventory = Inventory::probe();
    report(&inventory);
    let steps = plan(&inventory);
    if steps.is_empty() {
        println!("setup: everything is installed");
        return Ok(());
    }
    let mut manual = Vec::new();
    for step in steps {
        match step {
            Step::InstallNightly => {
                println!("setup: installing the nightly toolchain with rust-src");
                run_status(Command::new("rustup").args([
                    "toolchain",
                    "install",
                    "nightly",
                    "--profile",
                    "minimal",
                    "--component",
                    "rust-src",
                ]))?;
            }
            Step::AddRustSrc => {
                println!("setup: adding rust-src to the nightly toolchain");
                run_status(Command::new("rustup").args([
                    "component",
                    "add",
                    "rust-src",
                    "--toolchain",
                    "nightly",
                ]))?;
            }
            Step::AptInstall(packages) => {
                println!("setup: apt-get update");
                run_status(
                    Command::new("apt-get")
                        .arg("update")
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                )?;
                println!("setup: apt-get install {}", packages.join(" "));
                run_status(
                    Command::new("apt-get")
                        .args(["install", "-y", "--no-install-recommends"])
                        .args(&packages)
                        .env("DEBIAN_FRONTEND", "noninteractive"),
                )?;
            }
            Step::InstallBpfLinker => {
                if !manual.is_empty() {
                    manual.push(format!(
                        "then install bpf-linker: LLVM_PREFIX={LLVM_PREFIX} cargo install bpf-linker@{BPF_LINKER_VERSION} --locked --no-default-features --features llvm-22"
                    ));
                    continue;
                }
                println!(
                    "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (several minutes)"
                );
                run_status(
                    cargo()
                        .args([
                            "install",
                            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                            "--locked",
                            "--no-default-features",
                            "--features",
                            "llvm-22",
                        ])
                        .env("LLVM_PREFIX", LLVM_PREFIX),
                )?;
            }
            Step::Manual(sentence) => {
                println!("setup: cannot do this from here: {sentence}");
                manual.push(sentence);
            }
        }
    }
    if !manual.is_empty() {
        bail!("setup incomplete: {}", manual.join("; "));
    }
    let after = Inventory::probe();
    if !is_complete(&after) {
        bail!(
            "setup ran but still finds missing pieces: {:?}",
            plan(&after)
        );
    }
    println!("setup: done");
    Ok(())
}

/// Run [`setup`] only when the probe finds something missing (for `run` and `test`).
pub fn ensure() -> anyhow::Result<()> {
    let inventory = Inventory::probe();
    if is_complete(&inventory) {
        return Ok(());
    }
    println!("setup: something is missing; running `cargo xtask setup` first");
    setup().context("setting up the toolchain")
}

fn report(inventory: &Inventory) {
    let mark = |ok: bool| if ok { "ok     " } else { "missing" };
    println!("setup: {} nightly toolchain", mark(inventory.nightly));
    println!("setup: {} nightly rust-src", mark(inventory.rust_src));
    for package in DEBIAN_PACKAGES {
        println!(
            "setup: {} {package}",
            mark(!inventory.missing_packages.contains(&package))
        );
    }
    println!(
        "setup: {} bpf-linker {BPF_LINKER_VERSION}{}",
        mark(inventory.bpf_linker.as_deref() == Some(BPF_LINKER_VERSION)),
        match &inventory.bpf_linker {
            Some(version) if version != BPF_LINKER_VERSION => format!(" (found {version})"),
            _ => String::new(),
        }
    );
}

fn package_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

fn succeeds(command: &mut Command) -> bool {
    output(command).is_some()
}

/// Stdout of a command that ran and exited 0.
fn output(command: &mut Command) -> Option<String> {
    let out = command.stderr(std::process::Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> Inventory {
        Inventory {
            rustup: true,
            nightly: true,
            rust_src: true,
            apt: true,
            root: true,
            missing_packages: Vec::new(),
            bpf_linker: Some(BPF_LINKER_VERSION.into()),
        }
    }

    #[test]
    fn nothing_to_do_when_everything_is_there() {
        assert_eq!(plan(&complete()), []);
        assert!(is_complete(&complete()));
    }

    #[test]
    fn a_fresh_root_debian_machine_installs_everything_in_order() {
        let fresh = Inventory {
            nightly: false,
            rust_src: false,
            missing_packages: DEBIAN_PACKAGES.to_vec(),
            bpf_linker: None,
            ..complete()
        };
        assert_eq!(
            plan(&fresh),
            [
                Step::InstallNightly,
                Step::AptInstall(DEBIAN_PACKAGES.to_vec()),
                Step::InstallBpfLinker
            ]
        );
    }

    #[test]
    fn only_the_missing_pieces_are_installed() {
        let inventory = Inventory {
            rust_src: false,
            missing_packages: vec!["tshark"],
            ..complete()
        };
        assert_eq!(
            plan(&inventory),
            [Step::AddRustSrc, Step::AptInstall(vec!["tshark"])]
        );
        let wrong_linker = Inventory {
            bpf_linker: Some("0.9.4".into()),
            ..complete()
        };
        assert_eq!(plan(&wrong_linker), [Step::InstallBpfLinker]);
    }

    #[test]
    fn what_cannot_be_installed_gets_one_sentence() {
        let not_root = Inventory {
            root: false,
            missing_packages: vec!["llvm-22-dev"],
            ..complete()
        };
        match plan(&not_root).as_slice() {
            [Step::Manual(sentence)] => {
                assert!(sentence.contains("needs root"), "{sentence}");
                assert!(
                    sentence.contains("apt-get install -y llvm-22-dev"),
                    "{sentence}"
                );
            }
            other => panic!("unexpected plan {other:?}"),
        }
        let no_apt = Inventory {
            apt: false,
            missing_packages: DEBIAN_PACKAGES.to_vec(),
            ..complete()
        };
        assert!(
            matches!(plan(&no_apt).as_slice(), [Step::Manual(s)] if s.contains("not a Debian-like"))
        );
        let no_rustup = Inventory {
            rustup: false,
            nightly: false,
            rust_src: false,
            ..complete()
        };
        assert!(
            matches!(plan(&no_rustup).as_slice(), [Step::Manual(s)] if s.contains("rustup.rs"))
        );
    }
}
