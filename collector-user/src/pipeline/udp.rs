//! `collector run` in UDP-socket mode: settings in, lanes of [`UdpSource`] → [`Decoder`] → sink out.
//!
//! Binds everything before any thread starts (the metrics listener, one socket per listen address
//! per worker, the sinks), so a busy port or an unwritable ring directory fails at once with a
//! clear message. A host without IPv6 skips the default `[::]` addresses with a warning; an
//! explicit IPv6 `--listen` that cannot be bound is an error.

use super::BatchSink;
use super::lanes::{Lane, LaneOptions, LanesOutcome, run_lanes};
use crate::allow::AllowList;
use crate::config::{FlagConfig, Settings};
use crate::decode::sampling::ConfiguredRate;
use crate::decode::{Decoder, DecoderConfig};
use crate::ring::{RingConfig, RingOpen, WorkerRings};
use crate::source::udp::{UdpSocket, UdpSource, ensure_unused};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Bind the UDP sockets of `workers` workers: one socket per address per worker (`SO_REUSEPORT`),
/// after checking that no other socket holds any of the addresses.
pub fn bind_sources(
    listen: &[SocketAddr],
    listen_is_default: bool,
    workers: usize,
    rcvbuf: u64,
    allow: &AllowList,
) -> anyhow::Result<Vec<UdpSource>> {
    let mut per_worker: Vec<Vec<UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    let mut capped_warned = false;
    let mut usable = Vec::with_capacity(listen.len());
    for &addr in listen {
        match ensure_unused(addr) {
            Ok(()) => usable.push(addr),
            Err(err)
                if listen_is_default
                    && addr.is_ipv6()
                    && matches!(
                        err.raw_os_error(),
                        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                    ) =>
            {
                tracing::warn!(%addr, %err, "IPv6 unavailable, not listening on it");
            }
            Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                anyhow::bail!("UDP {addr} is already in use by another socket (another collector?)")
            }
            Err(err) => return Err(err).with_context(|| format!("binding UDP {addr}")),
        }
    }
    for addr in usable {
        let mut bound = Vec::with_capacity(workers);
        for _ in 0..workers {
            // Port 0: the other workers join the port the kernel gave the first one.
            let target = bound.first().map_or(addr, UdpSocket::local_addr);
            match UdpSocket::bind(target, rcvbuf) {
                Ok(socket) => bound.push(socket),
                Err(err)
                    if listen_is_default
                        && addr.is_ipv6()
                        && matches!(
                            err.raw_os_error(),
                            Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                        ) =>
                {
                    tracing::warn!(%addr, %err, "IPv6 unavailable, not listening on it");
                    break;
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("binding UDP {addr}"));
                }
            }
        }
        if bound.len() < workers {
            continue;
        }
        if let Some(first) = bound.first()
            && first.rcvbuf_usable() < rcvbuf
            && !capped_warned
        {
            capped_warned = true;
            tracing::warn!(
                asked = rcvbuf,
                granted = first.rcvbuf_usable(),
                "the kernel capped the socket receive buffer; raise net.core.rmem_max \
                 (sysctl -w net.core.rmem_max={rcvbuf}) or run with CAP_NET_ADMIN"
            );
        }
        for (worker, socket) in bound.into_iter().enumerate() {
            per_worker[worker].push(socket);
        }
    }
    anyhow::ensure!(
        per_worker.first().is_some_and(|s| !s.is_empty()),
        "no UDP address could be bound"
    );
    if let Some(sockets) = per_worker.first() {
        let addrs: Vec<String> = sockets.iter().map(|s| s.local_addr().to_string()).collect();
        tracing::info!(workers, listen = %addrs.join(" "), "UDP sockets bound");
    }
    Ok(per_worker
        .into_iter()
        .map(|sockets| UdpSource::new(sockets).with_allow(allow.clone()))
        .collect())
}

/// Run the UDP-mode collector with sinks from `open_sink(worker)` until `stop` is set (or
/// SIGINT/SIGTERM); returns the final totals and each lane's decoder and sink.
pub fn run_with_sinks<K, F>(
    settings: &Settings,
    flags: &FlagConfig,
    stop: Arc<AtomicBool>,
    mut open_sink: F,
) -> anyhow::Result<LanesOutcome<Decoder, K>>
where
    K: BatchSink + 'static,
    F: FnMut(usize) -> anyhow::Result<K>,
{
    let metrics_listener = std::net::TcpListener::bind(settings.metrics)
        .with_context(|| format!("binding the metrics endpoint {}", settings.metrics))?;
    let sources = bind_sources(
        &settings.listen,
        settings.listen_is_default,
        settings.workers,
        settings.rcvbuf,
        &AllowList::new(&settings.allow),
    )?;
    let mut lanes = Vec::with_capacity(sources.len());
    for (worker, source) in sources.into_iter().enumerate() {
        // Opening rings takes time (each is preallocated and mapped): a stop asked for meanwhile
        // ends the startup here, with no ring file half made.
        crate::control::check_startup()?;
        lanes.push(Lane {
            source,
            decoder: Decoder::with_config(DecoderConfig {
                sampling: settings.sampling.to_configured(settings.sampling_override),
                ..Default::default()
            }),
            sink: open_sink(worker)?,
        });
    }
    crate::control::check_startup()?;
    tracing::info!(metrics = %settings.metrics, "serving /metrics");
    if let Some(user) = settings.user.as_deref() {
        // Sockets bound, rings and the metrics port open, no thread started yet: nothing left
        // that needs root, and no other thread may exist while the ids change.
        let account = crate::privilege::drop_to_user(user, &[])?;
        tracing::info!(
            user,
            uid = account.uid,
            gid = account.gid,
            "privileges dropped"
        );
    }
    run_lanes(
        lanes,
        LaneOptions {
            metrics_listener,
            summary_interval: settings.summary_interval,
            stop,
            workers_stop: None,
            reload: sampling_reload(settings, flags),
            pin: true,
            cores: Vec::new(),
            xdp: None,
        },
    )
}

/// `collector run` without `--xdp`: write each worker's records to its rings in `--ring-dir`.
pub fn run(settings: &Settings, flags: &FlagConfig) -> anyhow::Result<()> {
    create_ring_dir(settings)?;
    let stop = Arc::new(AtomicBool::new(false));
    run_with_sinks(settings, flags, stop, |worker| open_rings(settings, worker))?;
    Ok(())
}

/// Open (create, resume or replace) the rings of `worker` in `--ring-dir`.
pub fn open_rings(settings: &Settings, worker: usize) -> anyhow::Result<WorkerRings> {
    let config = RingConfig {
        size: settings.ring_size,
        worker_id: u32::try_from(worker).unwrap_or(u32::MAX),
        ..Default::default()
    };
    let rings = WorkerRings::open(&settings.ring_dir, &config).with_context(|| {
        format!(
            "opening the rings of worker {worker} in {}",
            settings.ring_dir.display()
        )
    })?;
    tracing::info!(worker, flows = %rings.flows.path().display(), "ring files open");
    for (path, opened) in [
        (rings.flows.path(), rings.flows.opened()),
        (rings.counters.path(), rings.counters.opened()),
    ] {
        if let RingOpen::Replaced { reason } = opened {
            // The old records stay readable until readers finish the old file, then are gone.
            tracing::warn!(
                worker,
                ring = %path.display(),
                %reason,
                "ring replaced by a new generation"
            );
        }
    }
    Ok(rings)
}

/// The SIGHUP hook: re-read the configured sampling rates (config file, then flags).
pub fn sampling_reload(
    settings: &Settings,
    flags: &FlagConfig,
) -> Box<dyn FnMut() -> Option<Vec<ConfiguredRate>> + Send> {
    let settings = settings.clone();
    let flags = flags.clone();
    Box::new(move || match settings.reload_sampling(&flags) {
        Ok(rates) => {
            tracing::info!(entries = rates.len(), "sampling rates reloaded");
            Some(rates)
        }
        Err(err) => {
            tracing::error!(%err, "reload failed; keeping the previous sampling rates");
            None
        }
    })
}

/// Create `--ring-dir` (and its parents) if missing, and remove the temporary files a collector
/// that died while creating a ring left in it (logged).
pub fn create_ring_dir(settings: &Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.ring_dir).with_context(|| {
        format!(
            "creating the ring directory {}",
            settings.ring_dir.display()
        )
    })?;
    let removed = crate::ring::writer::remove_stale_temp_files(&settings.ring_dir);
    for (path, pid) in removed.removed {
        tracing::warn!(
            file = %path.display(),
            pid,
            "removed a temporary ring file left by a collector that no longer runs"
        );
    }
    for (path, err) in removed.failed {
        tracing::warn!(
            file = %path.display(),
            %err,
            "could not remove a stale temporary ring file"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_collector_on_the_same_port_is_refused() {
        let first = bind_sources(
            &["127.0.0.1:0".parse().unwrap()],
            false,
            3,
            1 << 20,
            &AllowList::default(),
        )
        .unwrap();
        let taken = first[0].sockets()[0].local_addr();
        assert!(first.iter().all(|s| s.sockets()[0].local_addr() == taken));
        let err = bind_sources(&[taken], false, 2, 1 << 20, &AllowList::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("already in use"), "{err}");
        drop(first);
        let sources = bind_sources(&[taken], false, 2, 1 << 20, &AllowList::default()).unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[1].sockets()[0].local_addr(), taken);
    }
}
