//! The `flowgen` command: send emulated cluster exports (`flowgen [send] ...`) or verify a collector's
//! rings against a manifest (`flowgen verify ...`).

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use flowgen::manifest::{Manifest, Params};
use flowgen::model::Profile;
use flowgen::netns::{self, AddedAddresses};
use flowgen::send::{self, ProgressMode, SendConfig};
use flowgen::verify::{VerifyConfig, verify_dir};
use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Emulate N cluster nodes exporting NetFlow v5/v9, IPFIX or sFlow (Open vSwitch profiles) to a
/// collector, write a manifest of exactly what was sent, and verify a collector's rings against it.
///
/// Without a subcommand, `flowgen` sends (the flags of `flowgen send`). A refusal other than "no
/// buffer space" stops the run. Sending exits 1 when such a refusal stopped it or the kernel refused
/// every data datagram (the first refusal's error is printed and the manifest still written), 2 on
/// an error, 0 otherwise (datagrams refused for lack of buffer space are printed and in the manifest).
#[derive(Parser, Debug)]
#[command(name = "flowgen", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    send: SendArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send exports (the default).
    Send(Box<SendArgs>),
    /// Compare a collector's flow rings with a manifest: missing (lost by the collector), extra and
    /// mismatched records, and records the rings overwrote before verify read them. Exits 0 when
    /// everything matched; 1 on any difference, or when the manifest records no flow record sent;
    /// 3 when all verify could see matched but the rings were too small to keep the whole run.
    Verify(VerifyArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Progress {
    /// A bar with the live rate when stderr is a terminal, plain lines otherwise.
    Auto,
    Bar,
    Lines,
    None,
}

#[derive(Args, Debug)]
struct SendArgs {
    /// What to emulate: ovs-netflow (v5 as OVS sends it), ovs-ipfix (OVS's 120 templates),
    /// ovs-sflow (1:400, 128-byte headers, counters), or generic netflow-v5, netflow-v9, ipfix, sflow.
    #[arg(long, value_enum, default_value_t = Profile::OvsIpfix)]
    profile: Profile,
    /// Collector address. Default: 127.0.0.1 and the profile's usual port (2055, 4739 or 6343).
    #[arg(long, value_name = "ADDR:PORT")]
    to: Option<SocketAddr>,
    /// Number of emulated nodes (exporters).
    #[arg(long, short = 'n', default_value_t = 1)]
    exporters: u32,
    /// Give each exporter its own source address: FIRST/PREFIX, exporter i sending from FIRST + i
    /// (e.g. 10.99.0.1/16 or fd00:99::1/64). The addresses must exist, or be added with --netns.
    /// Without this flag every exporter has its own source port on --source-ip.
    #[arg(long, value_name = "FIRST/PREFIX")]
    source_addrs: Option<String>,
    /// Add the --source-addrs addresses to an interface of this network namespace (`ip addr add`),
    /// send from inside it, and remove them afterwards. Never touches the host's interfaces.
    #[arg(long, value_name = "NAME", requires = "source_addrs")]
    netns: Option<String>,
    /// Interface in --netns to add the addresses to. Default: its first interface other than lo.
    #[arg(long, value_name = "DEV", requires = "netns")]
    netns_dev: Option<String>,
    /// Source address of the per-port exporters. Default: 127.0.0.1, or ::1 when --to is IPv6.
    #[arg(long, value_name = "IP", conflicts_with = "source_addrs")]
    source_ip: Option<IpAddr>,
    /// First source port (exporter i sends from PORT + i). Default: ports the kernel picks.
    #[arg(long, value_name = "PORT")]
    source_port_base: Option<u16>,
    /// Data datagrams per second, over all exporters (or each, with --per-exporter). Default: as
    /// fast as possible.
    #[arg(long, value_name = "N", conflicts_with = "record_rate")]
    rate: Option<f64>,
    /// Flow records per second instead of datagrams (converted with --records-per-datagram).
    #[arg(long, value_name = "N")]
    record_rate: Option<f64>,
    /// --rate / --record-rate are per exporter (total = rate × exporters).
    #[arg(long)]
    per_exporter: bool,
    /// Send for this many seconds (default 10 unless --count is given).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Send this many data datagrams in total (or per exporter, with --per-exporter), then stop.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Sender threads; exporters are partitioned over them.
    #[arg(long, short = 't', default_value_t = 1)]
    threads: usize,
    /// Most datagrams built and handed to sendmmsg per pacing step and thread.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Flow records per data datagram. Default: the profile's (v5 30, OVS IPFIX 1 as OVS, sFlow 5, ...).
    #[arg(long, value_name = "N")]
    records_per_datagram: Option<u32>,
    /// Re-send templates (and OVS exporter statistics) this often (v9 / IPFIX).
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    template_interval: f64,
    /// Send counter samples this often (sFlow).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    counter_interval: f64,
    /// sFlow sampling rate (1 in N). Default: 400 for ovs-sflow, 1000 for sflow.
    #[arg(long, value_name = "N")]
    sampling_rate: Option<u32>,
    /// Restart every exporter together this often: sequence numbers and uptime reset, templates
    /// re-sent (a template storm).
    #[arg(long, value_name = "SECS")]
    restart_every: Option<f64>,
    /// Skip one datagram's worth of sequence numbers before every N-th data datagram of each
    /// exporter (recorded in the manifest as intentional).
    #[arg(long, value_name = "N", default_value_t = 0)]
    gap_every: u64,
    /// Seed of the generated flows: the manifest and the seed regenerate every record sent.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the manifest (JSON) here.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// SO_SNDBUF of each exporter socket, in bytes.
    #[arg(long, value_name = "BYTES")]
    send_buffer: Option<usize>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
    /// Seconds between plain progress lines.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    progress_interval: f64,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// The manifest written by `flowgen --manifest`.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The collector's ring directory (flows-<worker>.ring files).
    #[arg(long, value_name = "DIR")]
    ring_dir: PathBuf,
    /// Flow start/end times may differ by this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1)]
    time_tolerance_ms: u64,
    /// Findings of each kind (missing, extra, mismatched) to print.
    #[arg(long, value_name = "N", default_value_t = 10)]
    show: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Verify(v)) => verify(v),
        Some(Command::Send(s)) => send_cmd(*s),
        None => send_cmd(cli.send),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flowgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::read(&args.manifest)?;
    let config = VerifyConfig {
        tolerance_ns: args.time_tolerance_ms.saturating_mul(1_000_000),
        show: args.show,
    };
    let report = verify_dir(&manifest, &args.ring_dir, &config)
        .with_context(|| format!("reading rings in {}", args.ring_dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(match report.verdict() {
        "OK" => ExitCode::SUCCESS,
        "INCOMPLETE" => ExitCode::from(3),
        _ => ExitCode::from(1),
    })
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// A flag set on SIGINT / SIGTERM, so that an interrupted run stops sending and still writes its
/// manifest.
fn stop_on_interrupt() -> Arc<AtomicBool> {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !INTERRUPTED.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

/// Parse `FIRST/PREFIX` into the first address and the prefix length.
fn parse_cidr(s: &str) -> anyhow::Result<(IpAddr, u8)> {
    let (a, p) = s
        .split_once('/')
        .with_context(|| format!("--source-addrs {s}: expected FIRST/PREFIX"))?;
    let addr: IpAddr = a.parse().with_context(|| format!("--source-addrs: {a}"))?;
    let prefix: u8 = p
        .parse()
        .with_context(|| format!("--source-addrs: prefix {p}"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    anyhow::ensure!(prefix <= max, "--source-addrs: prefix /{prefix} too long");
    Ok((addr, prefix))
}

/// `n` consecutive addresses from `first`, all inside `first/prefix`.
fn address_range(first: IpAddr, prefix: u8, n: u32) -> anyhow::Result<Vec<IpAddr>> {
    let (base, bits): (u128, u32) = match first {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let host_bits = bits - u32::from(prefix);
    let net_mask = if host_bits >= 128 {
        0
    } else {
        !((1u128 << host_bits) - 1)
    };
    let last = base
        .checked_add(u128::from(n.saturating_sub(1)))
        .context("--source-addrs: address range overflows")?;
    if (last & net_mask) != (base & net_mask) || (bits == 32 && last > u128::from(u32::MAX)) {
        bail!("--source-addrs: {n} addresses from {first} do not fit in /{prefix}");
    }
    Ok((0..u128::from(n))
        .map(|i| match first {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from((base + i) as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(base + i)),
        })
        .collect())
}

fn send_cmd(args: SendArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.exporters > 0, "--exporters must be at least 1");
    let profile = args.profile;
    let records_per_datagram = args
        .records_per_datagram
        .unwrap_or(profile.default_records_per_datagram());
    anyhow::ensure!(
        (1..=profile.max_records_per_datagram()).contains(&records_per_datagram),
        "--records-per-datagram must be 1..={} for {profile}",
        profile.max_records_per_datagram()
    );
    let destination = args.to.unwrap_or(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        profile.default_port(),
    ));
    let n = args.exporters;
    let scale = if args.per_exporter { f64::from(n) } else { 1.0 };
    let rate = match (args.rate, args.record_rate) {
        (Some(r), _) => Some(r * scale),
        (None, Some(r)) => Some(r * scale / f64::from(records_per_datagram)),
        (None, None) => None,
    };
    if let Some(r) = rate {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "the rate must be positive");
    }
    let count = args.count.map(|c| {
        if args.per_exporter {
            c * u64::from(n)
        } else {
            c
        }
    });
    let duration = match (args.duration, count) {
        (Some(d), _) => Some(Duration::try_from_secs_f64(d).context("--duration")?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };

    // Sources: own addresses (optionally added in a namespace) or own ports on one address.
    let mut _added: Option<AddedAddresses> = None;
    let sources: Vec<SocketAddr> = match &args.source_addrs {
        Some(spec) => {
            let (first, prefix) = parse_cidr(spec)?;
            let addrs = address_range(first, prefix, n)?;
            if let Some(ns) = &args.netns {
                let dev = match &args.netns_dev {
                    Some(d) => d.clone(),
                    None => netns::default_device(ns)?,
                };
                let added = AddedAddresses::add(ns, &dev, &addrs, prefix)?;
                eprintln!(
                    "flowgen: added {} addresses to {dev} in network namespace {ns}",
                    added.count()
                );
                _added = Some(added);
                netns::enter(ns)?;
            }
            addrs
                .into_iter()
                .enumerate()
                .map(|(i, a)| {
                    SocketAddr::new(
                        a,
                        args.source_port_base
                            .map_or(0, |p| p.wrapping_add(i as u16)),
                    )
                })
                .collect()
        }
        None => {
            let ip = args.source_ip.unwrap_or(if destination.is_ipv4() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            });
            (0..n)
                .map(|i| {
                    let port = match args.source_port_base {
                        Some(p) => p
                            .checked_add(u16::try_from(i).unwrap_or(u16::MAX))
                            .context("--source-port-base + exporters exceeds 65535")?,
                        None => 0,
                    };
                    Ok(SocketAddr::new(ip, port))
                })
                .collect::<anyhow::Result<_>>()?
        }
    };

    let progress = match args.progress {
        Progress::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
        Progress::Auto | Progress::Lines => {
            ProgressMode::Lines(Duration::from_secs_f64(args.progress_interval.max(0.1)))
        }
        Progress::Bar => ProgressMode::Bar,
        Progress::None => ProgressMode::None,
    };
    let config = SendConfig {
        destination,
        sources,
        params: Params {
            profile,
            seed: args.seed,
            records_per_datagram,
            time_base_ns: 0,
            template_interval_secs: args.template_interval,
            counter_interval_secs: args.counter_interval,
            sampling_rate: args
                .sampling_rate
                .unwrap_or(profile.default_sampling_rate()),
            gap_every: args.gap_every,
        },
        rate,
        duration,
        count,
        threads: args.threads,
        batch: args.batch,
        restart_every: args
            .restart_every
            .map(Duration::try_from_secs_f64)
            .transpose()
            .context("--restart-every")?,
        progress,
        send_buffer: args.send_buffer,
    };
    let manifest = send::run(&config, stop_on_interrupt())?;
    let t = &manifest.totals;
    eprintln!(
        "flowgen: {} exporters ({profile}) sent {} datagrams ({} data), {} records, {} bytes in {:.2}s ({:.0} datagrams/s, {:.0} records/s); {} refused, {} intentional gaps, {} restarts",
        t.exporters,
        t.datagrams,
        t.data_datagrams - t.unsent,
        t.records,
        t.bytes,
        manifest.elapsed_secs,
        t.datagrams as f64 / manifest.elapsed_secs.max(1e-9),
        t.records as f64 / manifest.elapsed_secs.max(1e-9),
        t.refused_datagrams,
        t.gaps,
        t.restarts
    );
    if let Some(path) = &args.manifest {
        manifest.write(path)?;
    }
    // Refused datagrams: say why, once (the first refusal).
    if t.refused_datagrams > 0 {
        eprintln!(
            "flowgen: the kernel refused {} datagrams ({} data datagrams, whose records were not sent); first refusal: {}",
            t.refused_datagrams,
            t.unsent,
            manifest.first_refusal().unwrap_or_default()
        );
    }
    match &manifest.stopped {
        Some(why) if Some(why) == manifest.first_refusal().as_ref() => {
            eprintln!("flowgen: stopped early: retrying cannot cure that refusal");
        }
        Some(why) => eprintln!("flowgen: stopped early: a refusal retrying cannot cure: {why}"),
        None => {}
    }
    // Failed: stopped by a refusal retrying cannot cure, or nothing got through. A run that lost
    // some datagrams to full buffers (ENOBUFS after retries: the sender's limit under overload)
    // still sent, and its manifest accounts for the rest.
    let nothing_sent = t.refused_datagrams > 0 && t.records == 0;
    Ok(if manifest.stopped.is_some() || nothing_sent {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_address_ranges() {
        let (first, prefix) = parse_cidr("10.99.0.254/16").unwrap();
        let a = address_range(first, prefix, 3).unwrap();
        assert_eq!(
            a,
            ["10.99.0.254", "10.99.0.255", "10.99.1.0"].map(|s| s.parse::<IpAddr>().unwrap())
        );
        assert!(address_range(first, 24, 3).is_err(), "leaves the /24");
        let (first, prefix) = parse_cidr("fd00:99::ffff/64").unwrap();
        let a = address_range(first, prefix, 2).unwrap();
        assert_eq!(a[1], "fd00:99::1:0".parse::<IpAddr>().unwrap());
        assert!(parse_cidr("10.0.0.1").is_err());
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(address_range("255.255.255.255".parse().unwrap(), 0, 2).is_err());
    }

    #[test]
    fn every_flag_is_documented() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        for sub in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some() || arg.get_id() == "help" || arg.get_id() == "version",
                    "{}: --{} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
