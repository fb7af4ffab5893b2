//! Template memory (issue 8): N emulated OVS nodes (`flowgen --profile ovs-ipfix`, each from its
//! own loopback address 127.1.x.y, so each is its own exporter with its own 121 templates: the
//! 120 data templates and the exporter-statistics options template) send one data datagram each,
//! with their templates before it, to a fresh one-worker collector. Measured: the templates the
//! collector cached and the bytes its cache accounts to them (`collector_templates`,
//! `collector_template_cache_bytes`), and the collector's resident set before and after (VmRSS,
//! `/proc`), so bytes per template both as the cache accounts them and as the process grew.
//! Written to `target/bench/templates.json`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use super::e2e::{self, Binaries};

/// Templates one OVS IPFIX node sends: 120 data templates and one options template.
pub const OVS_TEMPLATES_PER_NODE: u64 = 121;

/// What one template-memory run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TemplateMemory {
    /// Emulated OVS nodes, each with its own source address.
    pub exporters: u64,
    /// Templates the nodes defined (exporters × 121).
    pub templates_sent: u64,
    /// Datagrams flowgen sent (template and data) and the collector received.
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub socket_drops: u64,
    /// Templates in the collector's cache at the end, and those it learned.
    pub templates_cached: u64,
    pub templates_learned: u64,
    /// Templates evicted to respect the cache's caps (`reason="template_evicted"`).
    pub templates_evicted: u64,
    /// Bytes the cache accounts to its templates, and per cached template.
    pub cache_bytes: u64,
    pub cache_bytes_per_template: f64,
    /// VmRSS of the collector before the first datagram and once the templates were cached.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (rss_after - rss_before) / templates_cached: everything the process grew by, per template
    /// (exporter tables and receive buffers included).
    pub rss_bytes_per_template: f64,
    pub peak_rss_kib: u64,
    /// Sender rate (data datagrams/s; templates go out on top) and how long it sent.
    pub sender_rate: u64,
    pub sender_secs: f64,
}

#[derive(Debug, Deserialize)]
struct ManifestTotals {
    datagrams: u64,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    elapsed_secs: f64,
    totals: ManifestTotals,
}

/// First source address of the emulated nodes (node i sends from 127.1.0.1 + i). The whole of
/// 127.0.0.0/8 is local on Linux, so these need no configuration and no namespace.
const FIRST_SOURCE: &str = "127.1.0.1/16";

/// Run `exporters` OVS IPFIX nodes at `rate` data datagrams/s into a one-worker collector.
pub fn measure(
    bins: &Binaries,
    exporters: u64,
    rate: u64,
    sender_core: Option<usize>,
    scratch: &Path,
) -> anyhow::Result<TemplateMemory> {
    anyhow::ensure!(
        (1..=65_000).contains(&exporters),
        "1..=65000 exporters fit in {FIRST_SOURCE}"
    );
    let dir = scratch.join(format!("templates-{exporters}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = e2e::free_udp_port()?;
    let metrics = e2e::free_tcp_port()?;
    let log = std::fs::File::create(dir.join("collector.log"))?;
    let collector_core: Vec<usize> = sender_core
        .map(|c| usize::from(c == 0))
        .into_iter()
        .collect();
    let mut child = e2e::pinned(&bins.collector, &collector_core)
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--workers", "1", "--ring-dir"])
        .arg(dir.join("rings"))
        .args(["--ring-size", "16MiB"])
        .args(["--metrics", &format!("127.0.0.1:{metrics}")])
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the collector")?;
    let result = run(
        bins,
        &mut child,
        port,
        metrics,
        exporters,
        rate,
        sender_core,
        &dir,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    if result.is_err() {
        println!(
            "bench: collector log:\n{}",
            std::fs::read_to_string(dir.join("collector.log")).unwrap_or_default()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[allow(clippy::too_many_arguments)]
fn run(
    bins: &Binaries,
    child: &mut std::process::Child,
    port: u16,
    metrics: u16,
    exporters: u64,
    rate: u64,
    sender_core: Option<usize>,
    dir: &Path,
) -> anyhow::Result<TemplateMemory> {
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(15);
    while e2e::scrape(metrics).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("collector exited at start ({status})");
        }
        if Instant::now() > deadline {
            bail!("collector did not come up within 15 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_before_kib = vm_rss(pid)?;

    let manifest_path = dir.join("manifest.json");
    let out = e2e::pinned(&bins.flowgen, sender_core.as_slice())
        .args([
            "--profile",
            "ovs-ipfix",
            "--to",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--exporters", &exporters.to_string()])
        .args(["--source-addrs", FIRST_SOURCE])
        .args(["--count", &exporters.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--progress", "none", "--manifest"])
        .arg(&manifest_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running flowgen")?;
    anyhow::ensure!(
        out.status.success(),
        "flowgen failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path)?).context("manifest")?;

    // Settled when two scrapes 300 ms apart agree on templates and datagrams.
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        std::thread::sleep(Duration::from_millis(300));
        let text = e2e::scrape(metrics)?;
        let now = (
            e2e::metric_sum(&text, "collector_templates"),
            e2e::metric_sum(&text, "collector_datagrams_received_total"),
        );
        if last == Some(now) || Instant::now() > deadline {
            break text;
        }
        last = Some(now);
    };
    let rss_after_kib = vm_rss(pid)?;
    let (_, peak_rss_kib) = e2e::process_cost(pid)?;
    let templates_cached = e2e::metric_sum(&text, "collector_templates");
    let cache_bytes = e2e::metric_sum(&text, "collector_template_cache_bytes");
    let per = |bytes: f64| {
        if templates_cached == 0 {
            0.0
        } else {
            bytes / templates_cached as f64
        }
    };
    Ok(TemplateMemory {
        exporters,
        templates_sent: exporters * OVS_TEMPLATES_PER_NODE,
        datagrams_sent: manifest.totals.datagrams,
        datagrams_received: e2e::metric_sum(&text, "collector_datagrams_received_total"),
        socket_drops: e2e::metric_sum(&text, "collector_socket_drops_total"),
        templates_cached,
        templates_learned: e2e::metric_sum(&text, "collector_templates_learned_total"),
        templates_evicted: labeled_sum(
            &text,
            "collector_decode_errors_total",
            "reason=\"template_evicted\"",
        ),
        cache_bytes,
        cache_bytes_per_template: per(cache_bytes as f64),
        rss_before_kib,
        rss_after_kib,
        rss_bytes_per_template: per(rss_after_kib.saturating_sub(rss_before_kib) as f64 * 1024.0),
        peak_rss_kib,
        sender_rate: rate,
        sender_secs: manifest.elapsed_secs,
    })
}

/// Sum of the samples of `name` whose labels contain `label`.
pub fn labeled_sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .map(|l| e2e::metric_sum(l, name))
        .sum()
}

/// VmRSS (KiB) of a running process.
fn vm_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).context("no VmRSS in /proc/PID/status")
}

/// VmRSS in KiB from /proc/PID/status.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The run as Markdown.
pub fn markdown(m: &TemplateMemory) -> String {
    format!(
        "## Template memory ({} OVS IPFIX nodes × {} templates)\n\n\
         | templates sent | cached | evicted | cache bytes / template | RSS before → after MiB | RSS growth / template | datagrams sent / received / socket drops |\n\
         |---:|---:|---:|---:|---:|---:|---|\n\
         | {} | {} | {} | {:.1} B | {:.1} → {:.1} | {:.1} B | {} / {} / {} |\n",
        m.exporters,
        OVS_TEMPLATES_PER_NODE,
        m.templates_sent,
        m.templates_cached,
        m.templates_evicted,
        m.cache_bytes_per_template,
        m.rss_before_kib as f64 / 1024.0,
        m.rss_after_kib as f64 / 1024.0,
        m.rss_bytes_per_template,
        m.datagrams_sent,
        m.datagrams_received,
        m.socket_drops,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_labelled_metrics_are_read() {
        assert_eq!(
            parse_vm_rss("VmHWM:\t 9 kB\nVmRSS:\t  4096 kB\n"),
            Some(4096)
        );
        assert_eq!(parse_vm_rss("VmHWM:\t 9 kB\n"), None);
        let text = "collector_decode_errors_total{reason=\"template_evicted\"} 3\n\
                    collector_decode_errors_total{reason=\"template_missing\"} 5\n";
        assert_eq!(
            labeled_sum(
                text,
                "collector_decode_errors_total",
                "reason=\"template_evicted\""
            ),
            3
        );
    }

    /// A small run of the harness (20 nodes): every template reaches the cache and the figures
    /// are consistent; no size or speed asserted beyond "some bytes per template".
    #[test]
    fn every_template_of_a_small_run_is_cached() {
        let Some(bins) = crate::bench::test_binaries() else {
            return;
        };
        let scratch = std::env::temp_dir().join(format!("xtask-templates-{}", std::process::id()));
        let m = measure(&bins, 20, 200, None, &scratch).expect("template run");
        assert_eq!(m.templates_sent, 20 * 121);
        assert_eq!(m.datagrams_received, m.datagrams_sent, "{m:?}");
        assert_eq!(m.templates_cached, m.templates_sent, "{m:?}");
        assert_eq!(m.templates_evicted, 0);
        assert!(m.cache_bytes_per_template > 0.0, "{m:?}");
        assert!(
            m.rss_after_kib > 0 && m.peak_rss_kib >= m.rss_after_kib,
            "{m:?}"
        );
        assert!(markdown(&m).contains("| 2420 | 2420 | 0 |"));
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
