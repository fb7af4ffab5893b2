//! Sender scaling: whether the collector or flowgen saturates. One unpaced trial of the
//! one-worker collector (pinned to a core of its own) per sender setup: one flowgen thread on the
//! other core(s), as many threads as those cores, and flowgen unpinned with a thread per CPU
//! (then it shares the collector's core). Each trial reports the rate flowgen reached, the loss,
//! and the cores' worth of CPU each side used. On loopback the kernel's receive path (the
//! receiver's socket enqueue) runs in the sender's system call, so it is charged to the sender.

use std::{fmt::Write as _, path::Path};

use serde::{Deserialize, Serialize};

use super::e2e::{self, Binaries, SweepConfig, System};

/// One sender setup and what its unpaced trial showed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SenderProbe {
    pub profile: String,
    /// How flowgen ran, e.g. "2 threads on core 1".
    pub setup: String,
    pub sender_threads: usize,
    pub exporters: u32,
    /// Data datagrams/s and records/s flowgen reached.
    pub sent_datagrams_per_sec: f64,
    pub sent_records_per_sec: f64,
    pub loss: f64,
    pub sender_busy_cores: f64,
    pub receiver_busy_cores: f64,
    /// Which side limited, and whether it was CPU-bound ([`e2e::limit`]).
    pub bottleneck: String,
}

/// Profiles probed: the cheapest to send per record (v5) and the costliest to decode (IPFIX).
pub const PROFILES: [&str; 2] = ["ovs-netflow", "ovs-ipfix"];

/// The sender setups for a machine with `cpus` CPUs: `(label, cores, threads)`.
pub fn setups(cpus: usize) -> Vec<(String, Vec<usize>, usize)> {
    if cpus < 2 {
        return vec![("1 thread, unpinned (1 CPU)".into(), Vec::new(), 1)];
    }
    // The collector gets core 0, the sender the rest.
    let sender: Vec<usize> = (1..cpus).collect();
    let list = sender
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut v = vec![(format!("1 thread on core(s) {list}"), sender.clone(), 1)];
    let threads = sender.len().max(2);
    v.push((
        format!("{threads} threads on core(s) {list}"),
        sender.clone(),
        threads,
    ));
    v.push((
        format!("{cpus} threads unpinned (sharing the collector's core)"),
        Vec::new(),
        cpus,
    ));
    v
}

/// Run every setup on every profile against the one-worker collector.
pub fn probe(
    bins: &Binaries,
    cpus: usize,
    trial_secs: f64,
    scratch: &Path,
) -> anyhow::Result<Vec<SenderProbe>> {
    let mut probes = Vec::new();
    for profile in PROFILES {
        for (setup, cores, threads) in setups(cpus) {
            let config = SweepConfig {
                trial_secs,
                steps: 0,
                start_rate: None,
                sender_cores: cores,
                // The collector on core 0 in every setup, also when the sender is unpinned.
                receiver_core: (cpus > 1).then_some(0),
                sender_threads: threads,
                exporters: 4 * threads as u32,
            };
            let collector = System::Collector { workers: 1 };
            let t = e2e::trial(bins, collector, profile, None, &config, scratch)?;
            let probe = SenderProbe {
                profile: profile.into(),
                setup,
                sender_threads: threads,
                exporters: config.exporters,
                sent_datagrams_per_sec: t.sent_rate,
                sent_records_per_sec: if t.sent_datagrams > 0 {
                    t.sent_rate * t.sent_records as f64 / t.sent_datagrams as f64
                } else {
                    0.0
                },
                loss: t.loss,
                sender_busy_cores: t.sender_busy_cores(),
                receiver_busy_cores: t.receiver_busy_cores(trial_secs),
                bottleneck: e2e::limit(&t, &config).into(),
            };
            println!(
                "bench: senders {profile:<12} {:<50} {:>9.0} dgram/s loss {:.4}% sender {:.2} cores, collector {:.2} cores: {}",
                probe.setup,
                probe.sent_datagrams_per_sec,
                probe.loss * 100.0,
                probe.sender_busy_cores,
                probe.receiver_busy_cores,
                probe.bottleneck
            );
            probes.push(probe);
        }
    }
    Ok(probes)
}

/// The probes as a Markdown table.
pub fn markdown(probes: &[SenderProbe]) -> String {
    let mut md = String::from(
        "## Sender scaling (one-worker collector on core 0, one unpaced trial each)\n\n\
         | profile | sender | exporters | sent datagrams/s | records/s | loss % | sender cores busy | collector cores busy | limit |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for p in probes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {:.4} | {:.2} | {:.2} | {} |",
            p.profile,
            p.setup,
            p.exporters,
            p.sent_datagrams_per_sec,
            p.sent_records_per_sec,
            p.loss * 100.0,
            p.sender_busy_cores,
            p.receiver_busy_cores,
            p.bottleneck
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setups_keep_core_0_for_the_collector() {
        let two = setups(2);
        assert_eq!(two.len(), 3);
        assert_eq!(two[0].1, [1]);
        assert_eq!(two[0].2, 1);
        assert_eq!(two[1].1, [1]);
        assert_eq!(two[1].2, 2, "two threads on the one sender core");
        assert!(two[2].1.is_empty() && two[2].2 == 2);
        let four = setups(4);
        assert_eq!(four[1].1, [1, 2, 3]);
        assert_eq!(four[1].2, 3);
        assert_eq!(setups(1).len(), 1);
    }
}
