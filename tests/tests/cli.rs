//! The `collector` command line: help texts, the UDP-socket mode without `--xdp`, and the capability
//! check that names what is missing (run without privileges: as root, the capabilities are
//! dropped from the bounding set with `setpriv` before exec).

use std::process::{Command, Output};

use collector_tests::{collector::collector_bin, privilege};

fn collector(args: &[&str]) -> Output {
    Command::new(collector_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("collector runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_describes_every_flag() {
    let top = collector(&["--help"]);
    assert!(top.status.success());
    let top = text(&top);
    for needle in ["run", "--help", "--version", "Flow-export collector"] {
        assert!(top.contains(needle), "`{needle}` missing from:\n{top}");
    }
    let run = collector(&["run", "--help"]);
    assert!(run.status.success());
    let run = text(&run);
    for (flag, words) in [
        ("--xdp <IFACE>", "XDP fast path"),
        ("--xdp-mode <MODE>", "benchmark/diagnostic mode"),
        ("--xdp-zero-copy <MODE>", "zero-copy AF_XDP"),
        ("--xsk-ring-size <N>", "AF_XDP ring"),
        ("--xdp-spin-us <MICROS>", "idle collector uses"),
        ("--workers <N>", "one per RX queue"),
        ("--listen <ADDR:PORT>", "destination port"),
        ("--xdp-attach <MODE>", "driver"),
        (
            "--report-interval <SECONDS>",
            "reports of the XDP program's counters",
        ),
        ("--counters-file <PATH>", "one line"),
        ("--help", "Print help"),
    ] {
        assert!(run.contains(flag), "`{flag}` missing from:\n{run}");
        assert!(run.contains(words), "`{words}` missing from:\n{run}");
    }
    for default in [
        "0.0.0.0:2055",
        "0.0.0.0:2056",
        "0.0.0.0:4739",
        "0.0.0.0:6343",
    ] {
        assert!(run.contains(default), "default {default} not shown:\n{run}");
    }
}

#[test]
fn run_without_xdp_is_the_udp_socket_mode() {
    // A port someone else holds: socket mode refuses it at once instead of sharing it.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let rings = std::env::temp_dir().join(format!("collector-cli-rings-{}", std::process::id()));
    let out = collector(&[
        "run",
        "--listen",
        &listen,
        "--metrics",
        "127.0.0.1:0",
        "--ring-dir",
        rings.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_dir_all(&rings);
    assert!(!out.status.success());
    assert!(text(&out).contains("already in use"), "{}", text(&out));
}

#[test]
fn bad_flags_are_rejected() {
    for args in [
        &["run", "--xdp", "lo", "--xdp-attach", "offload"][..],
        &["run", "--xdp", "lo", "--listen", "2055"],
        &["run", "--xdp", "lo", "--report-interval", "0"],
        &["run", "--xdp", "lo", "--xdp-mode", "ring"],
        &["run", "--xdp", "lo", "--allow", "192.0.2.0/33"],
        &["run", "--xdp", "lo", "--allow", "exporter"],
    ] {
        let out = collector(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}

#[test]
fn xdp_without_capabilities_names_them_and_fails() {
    let binary = collector_bin();
    let args = ["run", "--xdp", "lo", "--listen", "0.0.0.0:2055"];
    let out = if privilege::missing_privilege().is_some() {
        // Already unprivileged: the plain run must refuse.
        Command::new(&binary).args(args).output().unwrap()
    } else {
        let setpriv = Command::new("setpriv").arg("--version").output();
        if !setpriv.is_ok_and(|o| o.status.success()) {
            privilege::skip(
                "xdp_without_capabilities_names_them_and_fails",
                "setpriv (util-linux) is needed to drop capabilities",
            );
            return;
        }
        Command::new("setpriv")
            .args(["--bounding-set", "-bpf,-net_admin,-sys_admin", "--"])
            .arg(&binary)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(!out.status.success(), "{}", text(&out));
    let message = text(&out);
    assert!(message.contains("CAP_BPF"), "{message}");
    assert!(message.contains("CAP_NET_ADMIN"), "{message}");
    assert!(message.contains("lacks"), "{message}");
}

/// AF_XDP mode also needs CAP_NET_RAW (perf mode CAP_PERFMON): dropping only that one is named.
#[test]
fn afxdp_and_perf_modes_name_their_extra_capability() {
    if privilege::missing_privilege().is_some() {
        privilege::skip(
            "afxdp_and_perf_modes_name_their_extra_capability",
            "needs root to drop exactly one capability",
        );
        return;
    }
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !setpriv.is_ok_and(|o| o.status.success()) {
        privilege::skip(
            "afxdp_and_perf_modes_name_their_extra_capability",
            "setpriv (util-linux) is needed to drop capabilities",
        );
        return;
    }
    for (mode, drop, name) in [
        ("afxdp", "-net_raw", "CAP_NET_RAW"),
        ("perf", "-perfmon,-sys_admin", "CAP_PERFMON"),
    ] {
        let out = Command::new("setpriv")
            .args(["--bounding-set", drop, "--"])
            .arg(collector_bin())
            .args(["run", "--xdp", "lo", "--xdp-mode", mode])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{}", text(&out));
        let message = text(&out);
        assert!(
            message.contains(&format!("lacks {name}")),
            "{mode}: {message}"
        );
    }
}
