//! `collector stats`: a terminal view of a running collector, read from its `/metrics` endpoint.
//!
//! Shows what an operator looks at first: per worker and per exporter datagrams/s, records/s,
//! sequence loss % and templates, socket drops and decode errors by reason; in XDP mode also the
//! XDP program's branch counters, each RX queue's AF_XDP counters (or each CPU's perf buffer) and
//! the slow path's share. Rates need two scrapes:
//! the one-shot view scrapes twice one second apart; `--watch SECS` redraws every SECS with the
//! rates over that interval. Every other count, loss % included, is the collector's total since
//! it started (templates: how many it holds now); the view's first lines say so. This module only reads the text format; the names come from
//! [`crate::metrics`].

use anyhow::Context as _;
use clap::Args;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Arguments of `collector stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Metrics endpoint of the running collector.
    #[arg(long, value_name = "ADDR", default_value = crate::config::DEFAULT_METRICS)]
    pub metrics: String,
    /// Redraw every SECS seconds until interrupted, with the rates (the /S columns) over those
    /// SECS. Without it: one view, rates over one second. Other counts and LOSS % are since the
    /// collector started.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
}

/// Print the view once (rates over one second), or every `--watch` seconds.
pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    let addr = args
        .metrics
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("invalid --metrics address {:?}", args.metrics))?;
    let interval = match args.watch {
        Some(0) => anyhow::bail!("--watch needs at least 1 second"),
        Some(s) => Duration::from_secs(s),
        None => Duration::from_secs(1),
    };
    let mut previous = Scrape::parse(&fetch(addr)?);
    let mut previous_at = Instant::now();
    loop {
        std::thread::sleep(interval);
        let now = Scrape::parse(&fetch(addr)?);
        let secs = previous_at.elapsed().as_secs_f64();
        previous_at = Instant::now();
        let view = render(&addr.to_string(), &previous, &now, secs);
        let mut out = std::io::stdout().lock();
        if args.watch.is_some() {
            // Clear the screen and go home, like `watch`.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        write!(out, "{view}")?;
        out.flush()?;
        if args.watch.is_none() {
            return Ok(());
        }
        previous = now;
    }
}

/// GET /metrics from `addr`.
pub fn fetch(addr: SocketAddr) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| {
        format!("connecting to the collector's metrics at {addr} (is it running? see --metrics)")
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading metrics from {addr}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed HTTP response from {addr}"))?;
    let status = head.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "metrics endpoint {addr} answered {status:?}"
    );
    Ok(body.to_string())
}

/// One scrape: metric name → (label set → value).
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    pub families: BTreeMap<String, BTreeMap<Vec<(String, String)>, f64>>,
}

impl Scrape {
    /// Parse the Prometheus/OpenMetrics text format (samples only; comments skipped).
    pub fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape::default();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(parts) => parts,
                None => continue,
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            scrape
                .families
                .entry(name.to_string())
                .or_default()
                .insert(labels, value);
        }
        scrape
    }

    /// Sum of `name` over series whose `key` label is `value` (all series when `key` is empty):
    /// 0 when the family has none of them (a counter not counted yet), `None` without the family.
    pub fn sum(&self, name: &str, key: &str, value: &str) -> Option<f64> {
        self.families.get(name)?;
        // From +0.0: an empty `Sum` of f64 is -0.0, printed "-0".
        Some(self.series(name, key, value).fold(0.0, |sum, v| sum + v))
    }

    /// The value of the first series of `name` whose `key` label is `value` (a gauge): `None`
    /// when there is none.
    pub fn first(&self, name: &str, key: &str, value: &str) -> Option<f64> {
        self.series(name, key, value).next()
    }

    fn series<'a>(
        &'a self,
        name: &str,
        key: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = f64> + 'a {
        self.families
            .get(name)
            .into_iter()
            .flatten()
            .filter(move |(labels, _)| {
                key.is_empty() || labels.iter().any(|(k, v)| k == key && v == value)
            })
            .map(|(_, v)| *v)
    }

    /// Values of label `key` in family `name`: numbers (workers, queues, CPUs) in numeric order
    /// first, then the other values in string order.
    pub fn label_values(&self, name: &str, key: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .families
            .get(name)
            .into_iter()
            .flat_map(|f| f.keys())
            .filter_map(|labels| {
                labels
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            })
            .collect();
        values.sort_by(|a, b| label_order(a).cmp(&label_order(b)));
        values.dedup();
        values
    }
}

/// Sort key of a label value: a number sorts by its value, before any value that is not one.
fn label_order(value: &str) -> (bool, u64, &str) {
    match value.parse::<u64>() {
        Ok(n) => (false, n, value),
        Err(_) => (true, 0, value),
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_string(), value));
        rest = after.get(end..).unwrap_or_default();
    }
    labels.sort();
    labels
}

/// The view of two scrapes `secs` apart.
pub fn render(endpoint: &str, before: &Scrape, now: &Scrape, secs: f64) -> String {
    let rate = |name: &str, key: &str, value: &str| -> String {
        match (now.sum(name, key, value), before.sum(name, key, value)) {
            (Some(n), Some(b)) if secs > 0.0 => format!("{:.0}", (n - b).max(0.0) / secs),
            (Some(_), None) => "-".into(),
            _ => "-".into(),
        }
    };
    let total = |name: &str, key: &str, value: &str| -> String {
        now.sum(name, key, value)
            .map_or_else(|| "-".into(), |v| format!("{v:.0}"))
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "collector {endpoint}: .../S columns are rates over the last {secs:.1} s;\n\
         every other count, LOSS % included, is since the collector started (TEMPLATES: now)"
    );
    let _ = writeln!(
        out,
        "{:<8} {:>5} {:>12} {:>12} {:>14} {:>12} {:>12}",
        "WORKER", "CORE", "DATAGRAMS/S", "RECORDS/S", "DATAGRAMS", "SOCK DROPS", "TEMPLATES"
    );
    for worker in now.label_values("collector_datagrams_received_total", "worker") {
        let core = now
            .first("collector_worker_core", "worker", &worker)
            .filter(|c| *c >= 0.0)
            .map_or_else(|| "-".into(), |c| format!("{c:.0}"));
        let _ = writeln!(
            out,
            "{:<8} {:>5} {:>12} {:>12} {:>14} {:>12} {:>12}",
            worker,
            core,
            rate("collector_datagrams_received_total", "worker", &worker),
            rate("collector_records_decoded_total", "worker", &worker),
            total("collector_datagrams_received_total", "worker", &worker),
            total("collector_socket_drops_total", "worker", &worker),
            total("collector_templates", "worker", &worker),
        );
    }
    let _ = writeln!(
        out,
        "\n{:<40} {:>12} {:>12} {:>8} {:>10} {:>8}",
        "EXPORTER", "DATAGRAMS/S", "RECORDS/S", "LOSS %", "RESTARTS", "ERRORS"
    );
    let mut exporters = now.label_values("collector_exporter_datagrams_total", "exporter");
    // Busiest first, "other" last.
    exporters.sort_by(|a, b| {
        let key = |e: &String| {
            (
                e == "other",
                -(now
                    .sum("collector_exporter_datagrams_total", "exporter", e)
                    .unwrap_or(0.0) as i64),
            )
        };
        key(a).cmp(&key(b)).then(a.cmp(b))
    });
    // "other" only when something is in it.
    exporters.retain(|e| {
        e != "other"
            || [
                "collector_exporter_datagrams_total",
                "collector_exporter_sequence_lost",
                "collector_exporter_restarts_total",
            ]
            .iter()
            .any(|name| now.sum(name, "exporter", e).is_some_and(|v| v != 0.0))
    });
    for exporter in exporters {
        let loss = match (
            now.sum("collector_exporter_sequence_lost", "exporter", &exporter),
            now.sum(
                "collector_exporter_sequence_units_total",
                "exporter",
                &exporter,
            ),
        ) {
            (Some(lost), Some(units)) if lost + units > 0.0 => {
                format!("{:.2}", 100.0 * lost / (lost + units))
            }
            (Some(_), Some(_)) => "0.00".into(),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<40} {:>12} {:>12} {:>8} {:>10} {:>8}",
            exporter,
            rate("collector_exporter_datagrams_total", "exporter", &exporter),
            rate("collector_exporter_records_total", "exporter", &exporter),
            loss,
            total("collector_exporter_restarts_total", "exporter", &exporter),
            total(
                "collector_exporter_decode_errors_total",
                "exporter",
                &exporter
            ),
        );
    }
    let errors: Vec<String> = now
        .families
        .get("collector_decode_errors_total")
        .into_iter()
        .flat_map(|f| f.iter())
        .filter(|(_, v)| **v > 0.0)
        .filter_map(|(labels, v)| {
            labels
                .iter()
                .find(|(k, _)| k == "reason")
                .map(|(_, r)| format!("{r}={v:.0}"))
        })
        .collect();
    render_xdp(&mut out, now, &rate, &total);
    let _ = writeln!(
        out,
        "\ntotal: {} datagrams/s, {} records/s, socket drops {}, decode errors: {}",
        rate("collector_datagrams_received_total", "", ""),
        rate("collector_records_decoded_total", "", ""),
        total("collector_socket_drops_total", "", ""),
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        }
    );
    out
}

/// The XDP part of the view, when the collector runs in XDP mode.
fn render_xdp(
    out: &mut String,
    now: &Scrape,
    rate: &dyn Fn(&str, &str, &str) -> String,
    total: &dyn Fn(&str, &str, &str) -> String,
) {
    let branches = now.label_values("collector_xdp_frames_total", "branch");
    if branches.is_empty() {
        return;
    }
    let order = collector_common::Counter::ALL.map(|c| c.name());
    let mut line = String::from("\nxdp:");
    for name in order.iter().filter(|n| branches.iter().any(|b| b == *n)) {
        let _ = write!(
            line,
            " {name}={}",
            total("collector_xdp_frames_total", "branch", name)
        );
    }
    let _ = writeln!(out, "{line}");
    let _ = writeln!(
        out,
        "slow path (UDP sockets): {} datagrams/s, {} total",
        rate("collector_slow_path_datagrams_total", "", ""),
        total("collector_slow_path_datagrams_total", "", ""),
    );
    let queues = now.label_values("collector_xsk_datagrams_total", "queue");
    if !queues.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<6} {:>12} {:>14} {:>11} {:>13} {:>15} {:>9} {:>10}",
            "QUEUE",
            "DATAGRAMS/S",
            "DATAGRAMS",
            "RX DROPPED",
            "RX RING FULL",
            "FILL RING EMPTY",
            "INVALID",
            "DISCARDED"
        );
        for queue in queues {
            let _ = writeln!(
                out,
                "{:<6} {:>12} {:>14} {:>11} {:>13} {:>15} {:>9} {:>10}",
                queue,
                rate("collector_xsk_datagrams_total", "queue", &queue),
                total("collector_xsk_datagrams_total", "queue", &queue),
                total("collector_xsk_rx_dropped_total", "queue", &queue),
                total("collector_xsk_rx_ring_full_total", "queue", &queue),
                total("collector_xsk_fill_ring_empty_total", "queue", &queue),
                total("collector_xsk_invalid_descriptors_total", "queue", &queue),
                total("collector_xsk_discarded_total", "queue", &queue),
            );
        }
    }
    let cpus = now.label_values("collector_perf_datagrams_total", "cpu");
    if !cpus.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<6} {:>12} {:>14} {:>12} {:>10}",
            "CPU", "DATAGRAMS/S", "DATAGRAMS", "LOST SAMPLES", "DISCARDED"
        );
        for cpu in cpus {
            let _ = writeln!(
                out,
                "{:<6} {:>12} {:>14} {:>12} {:>10}",
                cpu,
                rate("collector_perf_datagrams_total", "cpu", &cpu),
                total("collector_perf_datagrams_total", "cpu", &cpu),
                total("collector_perf_lost_samples_total", "cpu", &cpu),
                total("collector_perf_discarded_total", "cpu", &cpu),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP x y\n\
collector_datagrams_received_total{worker=\"0\"} 100\n\
collector_datagrams_received_total{worker=\"1\"} 50\n\
collector_records_decoded_total{worker=\"0\",protocol=\"IPFIX\"} 1000\n\
collector_exporter_datagrams_total{exporter=\"192.0.2.1\"} 100\n\
collector_exporter_datagrams_total{exporter=\"other\"} 50\n\
collector_decode_errors_total{reason=\"template_missing\"} 0\n\
# EOF\n";

    const NOW: &str = "collector_datagrams_received_total{worker=\"0\"} 300\n\
collector_datagrams_received_total{worker=\"1\"} 50\n\
collector_records_decoded_total{worker=\"0\",protocol=\"IPFIX\"} 3000\n\
collector_worker_core{worker=\"0\"} 1\n\
collector_exporter_datagrams_total{exporter=\"192.0.2.1\"} 300\n\
collector_exporter_datagrams_total{exporter=\"other\"} 50\n\
collector_exporter_sequence_lost{exporter=\"192.0.2.1\"} 3\n\
collector_exporter_sequence_units_total{exporter=\"192.0.2.1\"} 297\n\
collector_decode_errors_total{reason=\"template_missing\"} 4\n\
# EOF\n";

    #[test]
    fn parses_series_with_labels() {
        let s = Scrape::parse("a_total{x=\"1\",y=\"q\\\"z\"} 5\nb 2.5\n# EOF\n");
        assert_eq!(s.sum("a_total", "y", "q\"z"), Some(5.0));
        assert_eq!(s.sum("b", "", ""), Some(2.5));
        assert_eq!(s.sum("c", "", ""), None);
    }

    #[test]
    fn view_shows_rates_loss_and_errors() {
        let view = render(
            "127.0.0.1:9742",
            &Scrape::parse(BEFORE),
            &Scrape::parse(NOW),
            2.0,
        );
        // The header says what each column covers: rates over the interval, LOSS % (and the other
        // counts) since the collector started.
        let head: Vec<&str> = view.lines().take(2).collect();
        assert_eq!(
            head,
            [
                "collector 127.0.0.1:9742: .../S columns are rates over the last 2.0 s;",
                "every other count, LOSS % included, is since the collector started (TEMPLATES: now)",
            ],
            "{view}"
        );
        let worker0 = view.lines().find(|l| l.starts_with("0 ")).unwrap();
        let cols: Vec<_> = worker0.split_whitespace().collect();
        assert_eq!(cols, vec!["0", "1", "100", "1000", "300", "-", "-"]);
        // Worker 1 has no core gauge ("-", not "-0": an empty f64 sum is -0.0) and no records yet.
        let worker1 = view.lines().find(|l| l.starts_with("1 ")).unwrap();
        let cols: Vec<_> = worker1.split_whitespace().collect();
        assert_eq!(cols, vec!["1", "-", "0", "0", "50", "-", "-"]);
        assert!(!view.contains("-0"), "{view}");
        let exporter = view.lines().find(|l| l.starts_with("192.0.2.1")).unwrap();
        let cols: Vec<_> = exporter.split_whitespace().collect();
        assert_eq!(cols[1], "100");
        assert_eq!(cols[3], "1.00");
        let other_pos = view.find("\nother").unwrap();
        assert!(other_pos > view.find("\n192.0.2.1").unwrap());
        assert!(view.contains("template_missing=4"), "{view}");
        assert!(
            view.contains("total: 100 datagrams/s, 1000 records/s"),
            "{view}"
        );
        // An empty "other" row is left out.
        let quiet = NOW.replace(
            "collector_exporter_datagrams_total{exporter=\"other\"} 50",
            "collector_exporter_datagrams_total{exporter=\"other\"} 0",
        );
        let view = render(
            "127.0.0.1:9742",
            &Scrape::parse(BEFORE),
            &Scrape::parse(&quiet),
            2.0,
        );
        assert!(!view.contains("\nother"), "{view}");
        assert!(view.contains("\n192.0.2.1"), "{view}");
    }

    #[test]
    fn workers_are_listed_in_numeric_order() {
        let text: String = (0..12)
            .map(|w| format!("collector_datagrams_received_total{{worker=\"{w}\"}} {w}\n"))
            .collect();
        let scrape = Scrape::parse(&text);
        let view = render("x", &scrape, &scrape, 1.0);
        let rows: Vec<&str> = view
            .lines()
            .skip_while(|l| !l.starts_with("WORKER"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        let expected: Vec<String> = (0..12).map(|w| w.to_string()).collect();
        assert_eq!(rows, expected, "{view}");
        // Labels that are not all numbers: numbers first, in numeric order, then the rest.
        let scrape = Scrape::parse("m{l=\"b\"} 1\nm{l=\"10\"} 1\nm{l=\"a\"} 1\nm{l=\"9\"} 1\n");
        assert_eq!(scrape.label_values("m", "l"), ["9", "10", "a", "b"]);
    }

    #[test]
    fn xdp_mode_adds_program_queue_and_slow_path_lines() {
        let before = Scrape::parse(
            "collector_xsk_datagrams_total{queue=\"1\",worker=\"1\"} 10\n\
             collector_slow_path_datagrams_total{worker=\"0\"} 0\n",
        );
        let now = Scrape::parse(
            "collector_xdp_frames_total{branch=\"seen\"} 50\n\
             collector_xdp_frames_total{branch=\"redirected\"} 40\n\
             collector_slow_path_datagrams_total{worker=\"0\"} 6\n\
             collector_xsk_datagrams_total{queue=\"1\",worker=\"1\"} 30\n\
             collector_xsk_datagrams_total{queue=\"0\",worker=\"0\"} 4\n\
             collector_xsk_rx_dropped_total{queue=\"1\",worker=\"1\"} 2\n",
        );
        let view = render("x", &before, &now, 2.0);
        assert!(view.contains("xdp: seen=50 redirected=40"), "{view}");
        assert!(
            view.contains("slow path (UDP sockets): 3 datagrams/s, 6 total"),
            "{view}"
        );
        let queue1 = view.lines().find(|l| l.starts_with("1 ")).unwrap();
        let cols: Vec<_> = queue1.split_whitespace().collect();
        assert_eq!(cols, vec!["1", "10", "30", "2", "-", "-", "-", "-"]);
        // Queue 0 is listed before queue 1.
        assert!(view.find("\n0 ").unwrap() < view.find("\n1 ").unwrap());
        // Socket mode: no XDP section.
        let plain = render("x", &Scrape::parse(BEFORE), &Scrape::parse(NOW), 2.0);
        assert!(!plain.contains("xdp:"), "{plain}");
    }
}
