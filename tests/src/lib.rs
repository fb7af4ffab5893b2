//! Helpers shared by the integration tests in `tests/tests/`.
//!
//! - [`privilege`]: decide whether a privileged test may run; print `SKIPPED: <test>: <reason>`
//!   otherwise, or fail when `COLLECTOR_REQUIRE_PRIVILEGED=1`.
//! - [`netns`]: a pair of network namespaces joined by a veth pair, with unique names, removed
//!   on drop (also when the test panics); run code or send raw frames inside a namespace.
//! - [`collector`]: the `collector` binary under test, started in a namespace with its rings in
//!   a scratch directory, its counters read from `--counters-file` and `/metrics`, killed on drop.
//! - [`ovs`]: a private Open vSwitch (userspace bridge between two host namespaces) exporting
//!   NetFlow, IPFIX and sFlow, and a tcpdump capture of the exports.
//!
//! Tests only ever talk to addresses inside namespaces they created.

pub mod collector;
pub mod netns;
pub mod ovs;
pub mod privilege;

use std::time::{Duration, Instant};

/// Poll `probe` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
