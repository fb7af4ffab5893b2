//! Whether this process may run privileged tests (network namespaces, veth, XDP).
//!
//! A privileged test calls [`require`] first and returns when it gets `false`: the reason was
//! printed as `SKIPPED: <test>: <reason>`. With `COLLECTOR_REQUIRE_PRIVILEGED=1` a skip panics
//! instead, so CI cannot pass without running them.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use collector::xdp::{missing_capabilities, parse_cap_eff};

/// Environment variable that turns skips into failures.
pub const REQUIRE_PRIVILEGED: &str = "COLLECTOR_REQUIRE_PRIVILEGED";

const CAP_SYS_ADMIN: u32 = 21;

/// Why privileged tests cannot run here, or `None` when they can.
pub fn missing_privilege() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let cap_eff = parse_cap_eff(&status).unwrap_or(0);
    let mut missing = missing_capabilities(cap_eff);
    if cap_eff & (1 << CAP_SYS_ADMIN) == 0 {
        missing.push("CAP_SYS_ADMIN (network namespaces)");
    }
    if !missing.is_empty() {
        return Some(format!(
            "this process lacks {}; run as root",
            missing.join(", ")
        ));
    }
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !ip.is_ok_and(|s| s.success()) {
        return Some("the `ip` command (iproute2) is not installed".into());
    }
    None
}

/// `true` when the privileged test `test` may run. Otherwise prints `SKIPPED: test: reason` and
/// returns `false`, or panics when `COLLECTOR_REQUIRE_PRIVILEGED=1`.
pub fn require(test: &str) -> bool {
    let Some(reason) = missing_privilege() else {
        return true;
    };
    skip(test, &reason);
    false
}

/// Report `test` as skipped for `reason` (panics when skips are not allowed).
pub fn skip(test: &str, reason: &str) {
    if std::env::var(REQUIRE_PRIVILEGED).is_ok_and(|v| v == "1") {
        panic!("{test}: {reason}, and {REQUIRE_PRIVILEGED}=1 forbids skipping");
    }
    // Straight to the file descriptor: libtest captures `println!` of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
}
