//! Source addresses inside a network namespace: `--netns NAME` adds the exporters' addresses to an
//! interface of that namespace with `ip addr add` (never to the host's interfaces), moves the process
//! into the namespace before any socket is opened, and removes the addresses again when done.

use anyhow::{Context as _, bail};
use std::net::IpAddr;
use std::os::fd::AsRawFd as _;
use std::process::Command;

/// Addresses added to a namespace's interface; removed on drop.
#[derive(Debug)]
pub struct AddedAddresses {
    netns: String,
    dev: String,
    added: Vec<(IpAddr, u8)>,
}

fn ip(netns: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new("ip")
        .arg("-n")
        .arg(netns)
        .args(args)
        .output()
        .with_context(|| format!("running ip -n {netns} {}", args.join(" ")))
}

/// The first interface of `netns` other than loopback.
pub fn default_device(netns: &str) -> anyhow::Result<String> {
    let out = ip(netns, &["-o", "link", "show"])?;
    if !out.status.success() {
        bail!(
            "network namespace {netns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|name| {
            name.trim()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .find(|name| !name.is_empty() && name != "lo")
        .with_context(|| format!("network namespace {netns} has no interface besides lo"))
}

impl AddedAddresses {
    /// Add `addrs` (each with prefix length `prefix`) to `dev` in `netns`. Addresses already there
    /// are used as they are and left in place.
    pub fn add(netns: &str, dev: &str, addrs: &[IpAddr], prefix: u8) -> anyhow::Result<Self> {
        let mut added = AddedAddresses {
            netns: netns.to_string(),
            dev: dev.to_string(),
            added: Vec::new(),
        };
        for a in addrs {
            let cidr = format!("{a}/{prefix}");
            let mut args = vec!["addr", "add", cidr.as_str(), "dev", dev];
            if a.is_ipv6() {
                // No duplicate address detection: the addresses are usable at once.
                args.push("nodad");
            }
            let out = ip(netns, &args)?;
            if out.status.success() {
                added.added.push((*a, prefix));
            } else if !String::from_utf8_lossy(&out.stderr).contains("File exists") {
                bail!(
                    "ip -n {netns} addr add {cidr} dev {dev}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(added)
    }

    pub fn count(&self) -> usize {
        self.added.len()
    }
}

impl Drop for AddedAddresses {
    fn drop(&mut self) {
        for (a, prefix) in &self.added {
            let cidr = format!("{a}/{prefix}");
            let _ = ip(&self.netns, &["addr", "del", &cidr, "dev", &self.dev]);
        }
    }
}

/// Move the calling thread (and the threads it starts afterwards) into `netns`.
pub fn enter(netns: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns with a valid namespace fd; affects only this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        bail!("setns({path}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}
