//! The `collector` binary under test, run as a child process.
//!
//! [`collector_bin`] finds the binary (`COLLECTOR_BIN`, which `cargo xtask test` sets, or the
//! `collector` next to the test executable's `deps/` directory, refused when it is older than its
//! sources). [`CollectorProcess`] starts it (optionally inside a network namespace) with its ring
//! files in a scratch directory, reads its `--counters-file` and `/metrics`, sends it signals, and
//! kills it on drop so no test leaves a collector (or its XDP program) behind.

use std::{
    fs::File,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context as _, bail};
use collector::xdp::SteerCounters;

use crate::poll;

static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

/// Path of the `collector` binary to test.
pub fn collector_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("COLLECTOR_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/collector
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("collector"))
        .expect("test executable sits in target/<profile>/deps");
    assert!(
        candidate.exists(),
        "{} not found: run `cargo xtask test`, or `cargo build -p collector-user --bin collector` \
         before `cargo test`, or set COLLECTOR_BIN",
        candidate.display()
    );
    // `cargo test` rebuilds the library the tests link, not the binary: a binary older than the
    // sources it is built from would test yesterday's code.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest_source = [
        "collector-user/src",
        "collector-common/src",
        "collector-ebpf/src",
    ]
    .iter()
    .filter_map(|dir| newest_modification(&workspace.join(dir)))
    .max();
    let built = std::fs::metadata(&candidate)
        .and_then(|m| m.modified())
        .ok();
    if let (Some(source), Some(binary)) = (newest_source, built) {
        assert!(
            binary >= source,
            "{} is older than its sources: run `cargo xtask test`, or `cargo build -p \
             collector-user --bin collector` before `cargo test`",
            candidate.display()
        );
    }
    candidate
}

/// The latest modification time of the files under `dir`.
fn newest_modification(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_modification(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// A private scratch directory, removed on drop.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Create a fresh directory under the system temp dir.
    pub fn new() -> anyhow::Result<Self> {
        let n = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("collector-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir(path))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `collector`; killed with SIGKILL on drop if still running.
#[derive(Debug)]
pub struct CollectorProcess {
    child: Child,
    status: Option<ExitStatus>,
    scratch: ScratchDir,
    netns: Option<String>,
}

/// The `/metrics` address `collector run` serves by default (inside its namespace).
pub const DEFAULT_METRICS: &str = "127.0.0.1:9742";

impl CollectorProcess {
    /// Start `collector ARGS` (with `--xdp`, `--counters-file <scratch>/counters` too; for `run`
    /// without `--ring-dir`, `--ring-dir <scratch>/rings`), inside network namespace `netns` when
    /// given.
    /// `RUST_LOG` is set to `rust_log`. Stderr goes to a file ([`Self::stderr`]).
    pub fn start(netns: Option<&str>, args: &[&str], rust_log: &str) -> anyhow::Result<Self> {
        Self::start_in(ScratchDir::new()?, netns, args, rust_log)
    }

    /// [`Self::start`] with `--user USER`: the scratch directory is made writable for everyone
    /// so the collector can still replace its counters file after dropping root.
    pub fn start_as_user(
        user: &str,
        netns: Option<&str>,
        args: &[&str],
        rust_log: &str,
    ) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let scratch = ScratchDir::new()?;
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777))?;
        let mut args = args.to_vec();
        args.extend(["--user", user]);
        Self::start_in(scratch, netns, &args, rust_log)
    }

    fn start_in(
        scratch: ScratchDir,
        netns: Option<&str>,
        args: &[&str],
        rust_log: &str,
    ) -> anyhow::Result<Self> {
        let counters = scratch.path().join("counters");
        let stderr = File::create(scratch.path().join("stderr"))?;
        let mut command = Command::new(collector_bin());
        command.args(args);
        if args.contains(&"--xdp") {
            command.arg("--counters-file").arg(&counters);
        }
        if args.first() == Some(&"run") && !args.contains(&"--ring-dir") {
            command.arg("--ring-dir").arg(scratch.path().join("rings"));
        }
        command
            .env("RUST_LOG", rust_log)
            .env_remove("RUST_LOG_STYLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let ns_file = match netns {
            Some(ns) => Some(
                File::open(format!("/run/netns/{ns}"))
                    .with_context(|| format!("opening namespace {ns}"))?,
            ),
            None => None,
        };
        if let Some(file) = &ns_file {
            let fd = file.as_raw_fd();
            // SAFETY: only setns (async-signal-safe syscall) runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().context("starting collector")?;
        Ok(CollectorProcess {
            child,
            status: None,
            scratch,
            netns: netns.map(str::to_owned),
        })
    }

    /// The ring directory the helper gave `collector run`.
    pub fn rings(&self) -> PathBuf {
        self.scratch.path().join("rings")
    }

    /// GET `/metrics` at [`DEFAULT_METRICS`] in the collector's namespace.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let addr = DEFAULT_METRICS.parse()?;
        let fetch = move || collector::cli::stats::fetch(addr);
        match &self.netns {
            Some(ns) => crate::netns::NetnsPair::run_in(ns, fetch)?,
            None => fetch(),
        }
    }

    /// The value of one metric series (`name{labels}` exactly as rendered) in `/metrics`.
    pub fn metric(&self, series: &str) -> Option<u64> {
        let text = self.metrics().ok()?;
        metric_value(&text, series)
    }

    /// Everything the collector wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("stderr")).unwrap_or_default()
    }

    /// The counters of the latest report, if one was written.
    pub fn counters(&self) -> Option<SteerCounters> {
        std::fs::read_to_string(self.scratch.path().join("counters"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Wait until the first report (written right after attaching). Fails with the collector's
    /// stderr when it exits first or nothing comes within `timeout`.
    pub fn wait_attached(&mut self, timeout: Duration) -> anyhow::Result<SteerCounters> {
        let found = poll(timeout, || {
            if let Some(counters) = self.counters() {
                return Some(Ok(counters));
            }
            match self.child.try_wait() {
                Ok(Some(status)) => Some(Err(status)),
                _ => None,
            }
        });
        match found {
            Some(Ok(counters)) => Ok(counters),
            Some(Err(status)) => {
                self.status = Some(status);
                bail!(
                    "collector exited ({status}) before attaching:\n{}",
                    self.stderr()
                )
            }
            None => bail!(
                "collector did not attach within {timeout:?}:\n{}",
                self.stderr()
            ),
        }
    }

    /// Wait until a report satisfies `done`; the last counters seen on timeout are in the error.
    pub fn wait_counters(
        &self,
        timeout: Duration,
        done: impl Fn(&SteerCounters) -> bool,
    ) -> anyhow::Result<SteerCounters> {
        let mut last = None;
        let found = poll(timeout, || {
            let counters = self.counters()?;
            last = Some(counters);
            done(&counters).then_some(counters)
        });
        found.with_context(|| {
            format!(
                "counters did not reach the expected values within {timeout:?}; last: {last:?}\n{}",
                self.stderr()
            )
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (at most `timeout`) until the collector logged that it dropped root, check every one
    /// of its user ids is `uid`, and return its effective capability set (from /proc).
    pub fn wait_dropped_to(&self, uid: u32, timeout: Duration) -> anyhow::Result<u64> {
        poll(timeout, || {
            self.stderr().contains("privileges dropped").then_some(())
        })
        .with_context(|| format!("never dropped privileges:\n{}", self.stderr()))?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .context("no Uid line")?;
        let uid = uid.to_string();
        anyhow::ensure!(
            uid_line.split_whitespace().skip(1).all(|id| id == uid),
            "{uid_line}"
        );
        collector::xdp::parse_cap_eff(&status).context("no CapEff line")
    }

    /// Send `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(self.child.id() as i32, signal) } != 0 {
            bail!("kill: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let child = &mut self.child;
        let status = poll(timeout, || child.try_wait().ok().flatten())
            .with_context(|| format!("collector still running after {timeout:?}"))?;
        self.status = Some(status);
        Ok(status)
    }
}

/// The value of series `series` (`name{labels}` as rendered) in a metrics text.
pub fn metric_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
