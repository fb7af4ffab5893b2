//! Sending: sockets, `sendmmsg` batches, sender threads, pacing, events and the live progress.
//!
//! Exporters are partitioned over `threads` sender threads (exporter `i` on thread `i % threads`);
//! each has its own UDP socket bound to its source address and port. A thread paces with a token
//! bucket refilled once per batch (one clock read per batch, a sleep when the bucket is empty, never
//! a busy wait), builds up to a batch of datagrams round-robin over its exporters and hands each
//! exporter's share to the kernel with one `sendmmsg`. Datagrams the kernel refuses for lack of
//! buffer space are retried briefly, then recorded in the manifest as refused, so the manifest only
//! ever claims what left; any other refusal (no route from the source, a firewall) cannot be cured
//! by retrying and stops the run. Each exporter keeps the OS error of its first refusal.

use crate::exporter::{DataDatagram, Exporter};
use crate::manifest::{ExporterLog, Manifest, Params};
use anyhow::{Context as _, bail};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar with the live rate (stderr is a terminal).
    Bar,
    /// A plain line every this often.
    Lines(Duration),
    None,
}

/// What to send.
#[derive(Clone, Debug)]
pub struct SendConfig {
    pub destination: SocketAddr,
    /// One source per exporter (port 0: the kernel picks one).
    pub sources: Vec<SocketAddr>,
    pub params: Params,
    /// Data datagrams per second over all exporters; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    /// Data datagrams over all exporters.
    pub count: Option<u64>,
    pub threads: usize,
    /// Most datagrams built and sent per pacing step.
    pub batch: usize,
    pub restart_every: Option<Duration>,
    pub progress: ProgressMode,
    /// `SO_SNDBUF` of each socket (bytes), when set.
    pub send_buffer: Option<usize>,
}

/// Live counters shared by the sender threads and the progress display.
#[derive(Debug, Default)]
pub struct Live {
    pub datagrams: AtomicU64,
    pub records: AtomicU64,
    pub refused: AtomicU64,
}

/// Now, ns since the Unix epoch.
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Run the load: returns the manifest of what was sent.
pub fn run(config: &SendConfig, stop: Arc<AtomicBool>) -> anyhow::Result<Manifest> {
    anyhow::ensure!(!config.sources.is_empty(), "no exporters");
    anyhow::ensure!(config.threads > 0, "--threads must be at least 1");
    for s in &config.sources {
        if s.is_ipv4() != config.destination.is_ipv4() {
            bail!(
                "exporter source {s} and destination {} are of different IP versions",
                config.destination
            );
        }
    }
    let start_ns = unix_now_ns();
    let mut params = config.params.clone();
    params.time_base_ns = start_ns / 1_000_000 * 1_000_000;

    // Bind every socket before sending anything, so that a bad address fails the run up front.
    let threads = config.threads.min(config.sources.len());
    let mut lanes: Vec<Vec<Lane>> = (0..threads).map(|_| Vec::new()).collect();
    let n = config.sources.len() as u64;
    for (i, source) in config.sources.iter().enumerate() {
        let socket = UdpSocket::bind(source).with_context(|| {
            format!("binding exporter {i} to {source} (is the address configured? see --netns)")
        })?;
        if let Some(bytes) = config.send_buffer {
            set_send_buffer(&socket, bytes);
        }
        let local = socket.local_addr()?;
        let mut exporter = Exporter::new(i as u32, local, &params, start_ns);
        exporter.set_source(local);
        let budget = config.count.map(|c| c / n + u64::from((i as u64) < c % n));
        if let Some(lane) = lanes.get_mut(i % threads) {
            lane.push(Lane {
                exporter,
                socket,
                budget,
                queue: Vec::new(),
            });
        }
    }

    let live = Arc::new(Live::default());
    let stopped: Arc<std::sync::OnceLock<String>> = Arc::default();
    let started = Instant::now();
    let deadline = config.duration.map(|d| started + d);
    let per_thread_rate = config.rate.map(|r| r / threads as f64);
    let handles: Vec<_> = lanes
        .into_iter()
        .enumerate()
        .map(|(t, lanes)| {
            let sender = Sender {
                lanes,
                destination: config.destination,
                rate: per_thread_rate,
                batch: config.batch.max(1),
                deadline,
                restart_every: config.restart_every,
                started,
                live: live.clone(),
                stop: stop.clone(),
                stopped: stopped.clone(),
            };
            std::thread::Builder::new()
                .name(format!("flowgen-send-{t}"))
                .spawn(move || sender.run())
        })
        .collect::<Result<_, _>>()?;

    show_progress(config, &live, &handles, started);
    let mut logs: Vec<ExporterLog> = Vec::new();
    for h in handles {
        match h.join() {
            Ok(l) => logs.extend(l),
            Err(_) => bail!("a sender thread panicked"),
        }
    }
    let mut manifest = Manifest::new(config.destination, params, logs);
    manifest.elapsed_secs = started.elapsed().as_secs_f64();
    manifest.cpu_secs = process_cpu_secs();
    manifest.stopped = stopped.get().cloned();
    Ok(manifest)
}

/// User + system CPU seconds of this process so far (every thread).
pub fn process_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given; rusage is plain data.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn set_send_buffer(socket: &UdpSocket, bytes: usize) {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn show_progress(
    config: &SendConfig,
    live: &Live,
    handles: &[std::thread::JoinHandle<Vec<ExporterLog>>],
    started: Instant,
) {
    let done = || handles.iter().all(|h| h.is_finished());
    match config.progress {
        ProgressMode::None => {
            while !done() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        ProgressMode::Bar => {
            let bar = match (config.count, config.duration) {
                (Some(c), _) => indicatif::ProgressBar::new(c),
                (None, Some(d)) => indicatif::ProgressBar::new(d.as_secs().max(1)),
                (None, None) => indicatif::ProgressBar::new_spinner(),
            };
            let by_time = config.count.is_none() && config.duration.is_some();
            let template = if by_time {
                "{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}"
            } else {
                "{elapsed_precise} [{bar:30}] {pos}/{len} datagrams {msg}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            let mut last = (Instant::now(), 0u64, 0u64);
            while !done() {
                std::thread::sleep(Duration::from_millis(200));
                let d = live.datagrams.load(Ordering::Relaxed);
                let r = live.records.load(Ordering::Relaxed);
                let dt = last.0.elapsed().as_secs_f64().max(1e-3);
                if dt >= 1.0 {
                    bar.set_message(format!(
                        "{:.0} datagrams/s, {:.0} records/s, {} refused",
                        (d - last.1) as f64 / dt,
                        (r - last.2) as f64 / dt,
                        live.refused.load(Ordering::Relaxed)
                    ));
                    last = (Instant::now(), d, r);
                }
                bar.set_position(if by_time {
                    started.elapsed().as_secs()
                } else {
                    d
                });
            }
            bar.finish();
        }
        ProgressMode::Lines(every) => {
            let mut last = (Instant::now(), 0u64, 0u64);
            while !done() {
                std::thread::sleep(Duration::from_millis(50));
                if last.0.elapsed() < every {
                    continue;
                }
                let d = live.datagrams.load(Ordering::Relaxed);
                let r = live.records.load(Ordering::Relaxed);
                let dt = last.0.elapsed().as_secs_f64();
                eprintln!(
                    "flowgen: {:.1}s {d} datagrams {r} records ({:.0} datagrams/s, {:.0} records/s), {} refused",
                    started.elapsed().as_secs_f64(),
                    (d - last.1) as f64 / dt,
                    (r - last.2) as f64 / dt,
                    live.refused.load(Ordering::Relaxed)
                );
                last = (Instant::now(), d, r);
            }
        }
    }
}

/// A datagram queued for `sendmmsg`, and for data datagrams what they carry.
type Queued = (Vec<u8>, Option<DataDatagram>);

/// One exporter and its socket on a sender thread.
struct Lane {
    exporter: Exporter,
    socket: UdpSocket,
    /// Data datagrams left to send (`None`: until the deadline).
    budget: Option<u64>,
    /// Datagrams built for the current `sendmmsg`, with what each carries.
    queue: Vec<Queued>,
}

struct Sender {
    lanes: Vec<Lane>,
    destination: SocketAddr,
    rate: Option<f64>,
    batch: usize,
    deadline: Option<Instant>,
    restart_every: Option<Duration>,
    started: Instant,
    live: Arc<Live>,
    stop: Arc<AtomicBool>,
    /// Set (once, by the first thread to hit one) to a refusal that retrying cannot cure: every
    /// thread stops.
    stopped: Arc<std::sync::OnceLock<String>>,
}

impl Sender {
    fn run(mut self) -> Vec<ExporterLog> {
        let dest = SockAddr::from(self.destination);
        let mut tokens = 0.0f64;
        let mut last = Instant::now();
        let mut cursor = 0usize;
        let mut restarts_done = 0u64;
        let mut spare: Vec<Vec<u8>> = Vec::new();
        // Data datagrams left over all lanes (u64::MAX: until the deadline).
        let mut left: u64 = self
            .lanes
            .iter()
            .map(|l| l.budget.unwrap_or(u64::MAX))
            .fold(0u64, u64::saturating_add);
        loop {
            let now = Instant::now();
            if self.stop.load(Ordering::Relaxed)
                || self.stopped.get().is_some()
                || self.deadline.is_some_and(|d| now >= d)
            {
                break;
            }
            if left == 0 {
                break;
            }
            let now_ns = unix_now_ns();
            if let Some(every) = self.restart_every.filter(|e| !e.is_zero()) {
                let due = (now - self.started).as_nanos() / every.as_nanos();
                if due as u64 > restarts_done {
                    restarts_done = due as u64;
                    for lane in &mut self.lanes {
                        lane.exporter.restart(now_ns);
                    }
                }
            }
            let mut want = self.batch.min(left.min(usize::MAX as u64) as usize);
            if let Some(rate) = self.rate {
                let dt = now.duration_since(last).as_secs_f64();
                last = now;
                // The bucket holds two batches or 250 ms of traffic, whichever is more: enough to
                // catch up after a sleep that overran on a busy machine, not a long burst.
                tokens = (tokens + dt * rate).min((2.0 * self.batch as f64).max(rate * 0.25));
                // Wait for a worthwhile batch: the whole batch, or 2 ms of traffic at low rates.
                let target = (want as f64).min((rate * 0.002).max(1.0));
                if tokens < target {
                    let wait = (target - tokens) / rate;
                    std::thread::sleep(Duration::from_secs_f64(wait.clamp(1e-4, 0.05)));
                    continue;
                }
                want = want.min(tokens as usize);
            }
            let sent = self.send_round(&dest, now_ns, want, &mut cursor, &mut spare);
            tokens -= sent as f64;
            if left != u64::MAX {
                left = left.saturating_sub(sent as u64);
            }
        }
        self.lanes.into_iter().map(|l| l.exporter.log).collect()
    }

    /// Build and send `want` data datagrams round-robin from `cursor`; returns data datagrams handed
    /// to the kernel or refused (both use up tokens).
    fn send_round(
        &mut self,
        dest: &SockAddr,
        now_ns: u64,
        want: usize,
        cursor: &mut usize,
        spare: &mut Vec<Vec<u8>>,
    ) -> usize {
        let lanes = self.lanes.len();
        let share = want.div_ceil(lanes).max(1);
        let mut done = 0usize;
        let mut visited = 0usize;
        while done < want && visited < lanes {
            let i = *cursor % lanes;
            *cursor = (*cursor + 1) % lanes;
            visited += 1;
            let Some(lane) = self.lanes.get_mut(i) else {
                break;
            };
            let mut take = share.min(want - done);
            if let Some(b) = lane.budget {
                take = take.min(b.min(usize::MAX as u64) as usize);
            }
            if take == 0 {
                continue;
            }
            let mut control = Vec::new();
            if lane.exporter.templates_due(now_ns) {
                lane.exporter.template_datagrams(now_ns, &mut control);
            }
            if lane.exporter.counters_due(now_ns) {
                lane.exporter.counter_datagrams(now_ns, &mut control);
            }
            lane.queue.extend(control.into_iter().map(|d| (d, None)));
            let mut records = 0u64;
            for _ in 0..take {
                let mut buf = spare.pop().unwrap_or_default();
                let data = lane.exporter.data_datagram(now_ns, &mut buf, None);
                records += u64::from(data.records);
                lane.queue.push((buf, Some(data)));
            }
            if let Some(b) = lane.budget.as_mut() {
                *b -= take as u64;
            }
            let (sent, error) = send_all(&lane.socket, dest, &lane.queue);
            if let Some(e) = &error {
                if lane.exporter.log.refusal.is_none() {
                    lane.exporter.log.refusal = Some(e.to_string());
                }
                if !is_transient(e) {
                    let _ = self.stopped.set(format!(
                        "exporter {} ({} -> {}): {e}",
                        lane.exporter.log.index,
                        lane.exporter
                            .log
                            .source
                            .map_or_else(|| "?".to_string(), |s| s.to_string()),
                        self.destination
                    ));
                }
            }
            let mut refused = 0;
            for (k, (buf, data)) in lane.queue.drain(..).enumerate() {
                if k >= sent {
                    lane.exporter.refused(buf.len(), data);
                    if let Some(d) = data {
                        records -= u64::from(d.records);
                    }
                    refused += 1;
                }
                if data.is_some() {
                    spare.push(buf);
                }
            }
            self.live
                .datagrams
                .fetch_add(sent as u64, Ordering::Relaxed);
            self.live.records.fetch_add(records, Ordering::Relaxed);
            self.live.refused.fetch_add(refused, Ordering::Relaxed);
            done += take;
        }
        done
    }
}

/// A destination address in the form `sendmmsg` takes.
struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> Self {
        // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin)
                };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
                unsafe {
                    std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6)
                };
                size_of::<libc::sockaddr_in6>()
            }
        };
        SockAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }
}

/// Most datagrams in one `sendmmsg` call (the kernel's UIO_MAXIOV).
const MAX_MMSG: usize = 1024;
/// Attempts when the kernel has no buffer space (ENOBUFS / EAGAIN) before giving up on a datagram.
const RETRIES: u32 = 20;

/// Whether a refusal may pass by itself (no buffer space): retried, and the run goes on.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN))
}

/// Send `datagrams` to `dest` with as few `sendmmsg` calls as possible; returns how many were sent
/// (the first ones: `sendmmsg` stops at the first error) and, when not all were, the error that
/// stopped it.
fn send_all(
    socket: &UdpSocket,
    dest: &SockAddr,
    datagrams: &[Queued],
) -> (usize, Option<io::Error>) {
    let fd = socket.as_raw_fd();
    let mut sent = 0usize;
    let mut retries = 0;
    while sent < datagrams.len() {
        let chunk = datagrams.get(sent..).unwrap_or_default();
        let chunk = chunk.get(..chunk.len().min(MAX_MMSG)).unwrap_or_default();
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(d, _)| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is plain data; all-zero is valid and the fields are set below.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = (&dest.storage as *const libc::sockaddr_storage)
                    .cast_mut()
                    .cast();
                m.msg_hdr.msg_namelen = dest.len;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: `msgs` points at `iovs` and `dest`, all alive for the call; lengths match.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, 0) };
        if n > 0 {
            sent += n as usize;
            retries = 0;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ENOBUFS | libc::EAGAIN) if retries < RETRIES => {
                retries += 1;
                std::thread::sleep(Duration::from_micros(200 << retries.min(6)));
            }
            _ => return (sent, Some(err)),
        }
    }
    (sent, None)
}
