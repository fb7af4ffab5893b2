//! The control plane: one thread running a single-threaded tokio runtime, on no worker's core.
//!
//! It owns what the workers must not do: serving Prometheus `/metrics` over a minimal HTTP/1.1
//! responder, draining worker [`Event`]s (new exporters into the [`ExporterRegistry`], decode
//! error samples into the log), the periodic one-line summary, and signals: SIGINT/SIGTERM set the
//! shutdown flag the workers poll; SIGHUP calls the reload hook. It keeps serving until
//! [`ControlPlane::finish`] is called after the workers have drained, then logs the final summary.
//!
//! Before it runs, `collector run` is starting up (binding sockets, creating ring files through
//! temporary files, attaching XDP): [`catch_signals`] makes SIGINT, SIGTERM and SIGHUP only note
//! themselves from the very start, so that a signal then never kills the process half-way (which
//! would leave a ring-sized temporary file behind). Startup looks at [`check_startup`] between its
//! steps and stops cleanly ([`StartupStopped`]); a SIGHUP noted then is acted on once the control
//! plane runs.
//!
//! [`ExporterRegistry`]: crate::metrics::ExporterRegistry

use crate::metrics::{CollectorMetrics, Totals, render};
use crate::pipeline::Event;
use crossbeam_channel::Receiver;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

/// Largest HTTP request head the metrics endpoint reads.
const MAX_REQUEST: usize = 8192;
/// How often worker events are drained.
const EVENT_POLL: Duration = Duration::from_millis(100);

/// The first SIGINT or SIGTERM caught by [`catch_signals`]'s handler (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// A SIGHUP caught by [`catch_signals`]'s handler and not yet acted on.
static HANGUP: AtomicBool = AtomicBool::new(false);

/// The handler [`catch_signals`] installs: it only notes the signal (async-signal-safe).
extern "C" fn note_signal(signal: libc::c_int) {
    if signal == libc::SIGHUP {
        HANGUP.store(true, Ordering::Relaxed);
    } else {
        let _ = STOP_SIGNAL.compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP only note themselves: call it first thing in `collector
/// run`, before anything that must not be cut short. The control plane's own handlers, installed
/// when it starts, run beside this one (tokio chains the handler it finds).
pub fn catch_signals() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: sigaction is plain data; zeroed is a valid value, and the fields are set below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // Interrupted system calls of the startup (file creation, fallocate) carry on.
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: a valid sigaction whose handler only stores to atomics.
        let rc = unsafe {
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(signal, &raw const action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The name of the first SIGINT or SIGTERM [`catch_signals`] caught, if one came.
pub fn stop_signal() -> Option<&'static str> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        libc::SIGINT => Some("SIGINT"),
        _ => Some("SIGTERM"),
    }
}

/// A stop asked for before the collector started collecting: startup ended early, cleanly.
#[derive(Debug, thiserror::Error)]
#[error("{0} during startup: stopped before collecting")]
pub struct StartupStopped(pub &'static str);

/// Between two startup steps: `Err` when a SIGINT or SIGTERM came meanwhile.
pub fn check_startup() -> Result<(), StartupStopped> {
    match stop_signal() {
        Some(signal) => Err(StartupStopped(signal)),
        None => Ok(()),
    }
}

/// Called on SIGHUP (re-read what can change at run time).
pub type ReloadHook = Box<dyn FnMut() + Send>;

/// What the control plane runs with.
pub struct ControlSetup {
    pub metrics: Arc<CollectorMetrics>,
    pub events: Receiver<Event>,
    /// The bound `/metrics` listener (bound by the caller so a busy port fails before workers start).
    pub listener: std::net::TcpListener,
    /// Set on SIGINT/SIGTERM; the workers poll it.
    pub stop: Arc<AtomicBool>,
    pub summary_interval: Duration,
    pub reload: ReloadHook,
}

/// The running control plane thread.
pub struct ControlPlane {
    finished: Arc<tokio::sync::Notify>,
    thread: std::thread::JoinHandle<std::io::Result<Totals>>,
}

impl ControlPlane {
    /// Start the control thread. Returns once signal handlers are installed.
    pub fn start(setup: ControlSetup) -> std::io::Result<ControlPlane> {
        let finished = Arc::new(tokio::sync::Notify::new());
        let notify = Arc::clone(&finished);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(serve(setup, notify, ready_tx))
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(ControlPlane { finished, thread }),
            Ok(Err(err)) => Err(err),
            Err(_) => match thread.join() {
                Ok(Err(err)) => Err(err),
                _ => Err(std::io::Error::other("control thread ended during start")),
            },
        }
    }

    /// The workers are done: drain the last events, log the final summary and stop.
    pub fn finish(self) -> std::io::Result<Totals> {
        self.finished.notify_one();
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("control thread panicked"))?
    }
}

async fn serve(
    mut setup: ControlSetup,
    finished: Arc<tokio::sync::Notify>,
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
) -> std::io::Result<Totals> {
    let prepared = (|| {
        setup.listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(setup.listener.try_clone()?)?;
        Ok::<_, std::io::Error>((
            listener,
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    })();
    let (listener, mut sigint, mut sigterm, mut sighup) = match prepared {
        Ok(p) => {
            let _ = ready.send(Ok(()));
            p
        }
        Err(err) => {
            let _ = ready.send(Err(std::io::Error::new(err.kind(), err.to_string())));
            return Err(err);
        }
    };
    // Signals that came while starting up, before the handlers above were installed.
    if let Some(signal) = stop_signal() {
        request_stop(&setup.stop, signal);
    }
    if HANGUP.swap(false, Ordering::Relaxed) {
        tracing::info!("SIGHUP (during startup): reloading");
        (setup.reload)();
    }
    let registry = Arc::new(setup.metrics.registry());
    let mut events_tick = tokio::time::interval(EVENT_POLL);
    let mut summary_tick = tokio::time::interval(setup.summary_interval);
    summary_tick.tick().await;
    let started = setup.metrics.totals();
    let started_at = Instant::now();
    let mut previous = started;
    let mut previous_at = started_at;
    let finished = finished.notified();
    tokio::pin!(finished);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    drain_events(&setup);
                    tokio::spawn(respond(stream, Arc::clone(&registry)));
                }
            }
            _ = events_tick.tick() => drain_events(&setup),
            _ = summary_tick.tick() => {
                drain_events(&setup);
                let now = setup.metrics.totals();
                let secs = previous_at.elapsed().as_secs_f64();
                tracing::info!("{}", now.summary_line(&previous, secs));
                previous = now;
                previous_at = Instant::now();
            }
            _ = sigint.recv() => request_stop(&setup.stop, "SIGINT"),
            _ = sigterm.recv() => request_stop(&setup.stop, "SIGTERM"),
            _ = sighup.recv() => {
                HANGUP.store(false, Ordering::Relaxed);
                tracing::info!("SIGHUP: reloading");
                (setup.reload)();
            }
            _ = &mut finished => break,
        }
    }
    drain_events(&setup);
    let totals = setup.metrics.totals();
    // The rates of the whole run (the periodic lines give those of their interval).
    let secs = started_at.elapsed().as_secs_f64();
    tracing::info!("final: {}", totals.summary_line(&started, secs));
    Ok(totals)
}

fn request_stop(stop: &AtomicBool, signal: &str) {
    if !stop.swap(true, Ordering::Relaxed) {
        tracing::info!("{signal}: stopping sources, draining, flushing rings");
    }
}

fn drain_events(setup: &ControlSetup) {
    for event in setup.events.try_iter() {
        match event {
            Event::NewExporter {
                worker,
                exporter,
                counters,
            } => {
                tracing::info!(worker, %exporter, "new exporter");
                setup
                    .metrics
                    .exporters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .add(exporter, counters);
            }
            Event::Templates {
                worker,
                learned,
                withdrawn,
                cached,
            } => tracing::info!(worker, learned, withdrawn, cached, "templates changed"),
            Event::Sequences { worker, counts } => setup
                .metrics
                .exporters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_sequences(worker, counts),
            Event::DecodeError {
                worker,
                exporter,
                reason,
                suppressed,
            } => {
                tracing::warn!(worker, %exporter, %reason, suppressed, "decode error");
            }
        }
    }
}

/// Answer one HTTP/1.x request: `GET /metrics` → the metrics text; anything else → 404/405.
async fn respond(mut stream: tokio::net::TcpStream, registry: Arc<Registry>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break false,
            Ok(Ok(n)) => {
                head.extend_from_slice(buf.get(..n).unwrap_or_default());
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    break true;
                }
                if head.len() > MAX_REQUEST {
                    break false;
                }
            }
        }
    };
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next(), parts.next());
    let (status, content_type, body) = if !complete {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    } else if method != Some("GET") {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        )
    } else if path == Some("/metrics") {
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(&registry),
        )
    } else {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::counters::bump;
    use crate::pipeline::{ExporterCounters, WorkerCounters};
    use std::io::{Read, Write};

    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_takes_events_and_stops_on_finish() {
        let worker = Arc::new(WorkerCounters::new(0));
        bump(&worker.datagrams, 42);
        let metrics = Arc::new(CollectorMetrics::new(vec![worker], 10));
        let (tx, rx) = crossbeam_channel::bounded(8);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reloads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = Arc::clone(&reloads);
        let control = ControlPlane::start(ControlSetup {
            metrics,
            events: rx,
            listener,
            stop: Arc::new(AtomicBool::new(false)),
            summary_interval: Duration::from_secs(60),
            reload: Box::new(move || {
                r.fetch_add(1, Ordering::Relaxed);
            }),
        })
        .unwrap();
        let counters = Arc::new(ExporterCounters::default());
        bump(&counters.datagrams, 5);
        tx.send(Event::NewExporter {
            worker: 0,
            exporter: "192.0.2.8:999".parse().unwrap(),
            counters: Arc::clone(&counters),
        })
        .unwrap();
        let text = get(addr, "/metrics");
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.contains("collector_datagrams_received_total{worker=\"0\"} 42"));
        assert!(text.contains("collector_exporter_datagrams_total{exporter=\"192.0.2.8\"} 5"));
        assert!(text.trim_end().ends_with("# EOF"));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        let totals = control.finish().unwrap();
        assert_eq!(totals.datagrams, 42);
        assert_eq!(totals.exporters, 1);
        assert_eq!(reloads.load(Ordering::Relaxed), 0);
    }
}
