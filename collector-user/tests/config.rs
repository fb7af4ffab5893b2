//! `collector run` settings through the binary: bad flags, bad values and unknown keys are one
//! clear line on stderr and exit code 2; the repository's `collector.example.toml` stays valid.

use collector::config::{FileConfig, FlagConfig, Settings};
use collector::xdp::SteerMode;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn collector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_collector"))
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("collector-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Run `collector run ARGS`, expect exit code 2 and one stderr line containing every `needle`.
fn refused(args: &[&str], needles: &[&str]) {
    let out = collector()
        .arg("run")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {args:?}: stderr {stderr}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "args {args:?}: not one line: {stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "args {args:?}: {needle:?} missing in {stderr}"
        );
    }
}

#[test]
fn unknown_key_in_the_file_is_named_with_exit_code_2() {
    let path = temp_file("unknown.toml", "workers = 2\nring_dri = \"/tmp/x\"\n");
    refused(
        &["--config", path.to_str().unwrap()],
        &["ring_dri", "line 2", "unknown.toml"],
    );
}

#[test]
fn bad_values_exit_2_naming_the_setting() {
    refused(&["--workers", "0"], &["--workers"]);
    refused(&["--listen", "2055"], &["--listen", "2055"]);
    refused(&["--sampling-rate", "10.0.0.0/8"], &["--sampling-rate"]);
    refused(&["--sampling-rate", "10.0.0.0/8=0"], &["sampling rate"]);
    refused(&["--metrics", "localhost"], &["--metrics"]);
    refused(&["--rcvbuf", "lots"], &["--rcvbuf"]);
    let path = temp_file("bad-value.toml", "workers = \"many\"\n");
    refused(
        &["--config", path.to_str().unwrap()],
        &["bad-value.toml", "line 1"],
    );
    let path = temp_file("bad-prefix.toml", "[sampling_rate]\n\"10.0.0.0/40\" = 5\n");
    refused(&["--config", path.to_str().unwrap()], &["10.0.0.0/40"]);
    let path = temp_file("bad-allow.toml", "allow = [\"10.0.0.0/8\", \"ten\"]\n");
    refused(&["--config", path.to_str().unwrap()], &["allow", "ten"]);
    refused(
        &["--config", "/nonexistent/collector.toml"],
        &["/nonexistent/collector.toml"],
    );
    // clap's own usage errors use exit code 2 as well.
    let out = collector()
        .args(["run", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn example_config_is_valid_and_flags_win_over_it() {
    let path = repo_root().join("collector.example.toml");
    let file = FileConfig::load(&path).unwrap();
    let flags = FlagConfig {
        config: Some(path.clone()),
        ring_dir: Some("/tmp/flag-wins".into()),
        ..Default::default()
    };
    let settings = Settings::combine(&flags, file).unwrap();
    assert_eq!(settings.ring_dir, PathBuf::from("/tmp/flag-wins"));
    assert_eq!(settings.listen.len(), 8);
    assert_eq!(settings.metrics, "127.0.0.1:9742".parse().unwrap());
    // Copied unchanged (as the README's install step does), it stamps no sampling rate on
    // anyone, allows every source and stays root.
    assert_eq!(
        settings.sampling.rate_for("10.20.30.40".parse().unwrap()),
        None
    );
    assert!(settings.allow.is_empty() && settings.user.is_none());
    assert_eq!(settings.xdp, None, "the packaged unit runs UDP mode");
    let resolved = Settings::resolve(&FlagConfig {
        config: Some(path),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(resolved.ring_dir, PathBuf::from("/var/lib/collector/rings"));
}

#[test]
fn example_config_keys_left_commented_out_are_valid_too() {
    let text = std::fs::read_to_string(repo_root().join("collector.example.toml")).unwrap();
    // Every `# key = value` line, uncommented (prose lines have no ` = `).
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(char::is_uppercase) => {
                rest.to_string()
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = Path::new("collector.example.toml");
    let file = FileConfig::parse(path, &uncommented).unwrap();
    let settings = Settings::combine(&FlagConfig::default(), file).unwrap();
    assert_eq!(settings.workers, 4);
    assert_eq!(settings.xdp.as_deref(), Some("eth0"));
    assert_eq!(settings.xdp_mode, SteerMode::Afxdp);
    assert_eq!(settings.xsk_ring_size, Some(8192));
    assert_eq!(settings.report_interval, Duration::from_secs(5));
    assert_eq!(
        settings.counters_file,
        Some(PathBuf::from("/var/lib/collector/xdp-counters"))
    );
    assert_eq!(
        settings.allow,
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap()
        ]
    );
    assert_eq!(settings.user.as_deref(), Some("collector"));
    assert_eq!(
        settings.sampling.rate_for("10.20.30.40".parse().unwrap()),
        Some(400)
    );
    assert_eq!(
        settings.sampling.rate_for("192.0.2.10".parse().unwrap()),
        Some(1000)
    );
}

#[test]
fn settings_that_only_apply_with_xdp_are_refused_without_it() {
    let xdp_only: [&[&str]; 8] = [
        &["--xdp-attach", "skb"],
        &["--xdp-mode", "perf"],
        &["--xdp-zero-copy", "on"],
        &["--xsk-ring-size", "4096"],
        &["--xdp-spin-us", "10"],
        &["--xdp-busy-poll"],
        &["--report-interval", "3"],
        &["--counters-file", "/tmp/counters"],
    ];
    for args in xdp_only {
        refused(args, &[args[0], "only applies with --xdp <IFACE>"]);
    }
    for (key, line) in [
        ("xdp_attach", "xdp_attach = \"skb\""),
        ("xdp_mode", "xdp_mode = \"perf\""),
        ("report_interval", "report_interval = 3"),
        ("counters_file", "counters_file = \"/tmp/counters\""),
        ("xdp_busy_poll", "xdp_busy_poll = true"),
    ] {
        let path = temp_file(&format!("{key}.toml"), &format!("{line}\n"));
        refused(
            &["--config", path.to_str().unwrap()],
            &[key, "only applies with --xdp <IFACE>"],
        );
    }
}

#[test]
fn bad_xdp_switches_in_the_file_exit_2_before_anything_is_attached() {
    for (name, text, key) in [
        ("bad-iface.toml", "xdp = \"eth0 eth1\"\n", "xdp"),
        (
            "bad-mode.toml",
            "xdp = \"lo\"\nxdp_mode = \"ring\"\n",
            "xdp_mode",
        ),
        (
            "bad-attach.toml",
            "xdp = \"lo\"\nxdp_attach = \"offload\"\n",
            "xdp_attach",
        ),
        (
            "bad-report.toml",
            "xdp = \"lo\"\nreport_interval = 0\n",
            "report_interval",
        ),
    ] {
        let path = temp_file(name, text);
        refused(
            &["--config", path.to_str().unwrap()],
            &[&format!("invalid {key} value")],
        );
    }
}

/// `user` (or `--user`) names a user the system does not have, or root: a bad value like any
/// other, refused when the settings are read, before any ring file or socket exists.
#[test]
fn an_unknown_or_root_user_exits_2_before_any_ring_is_created() {
    let base = std::env::temp_dir().join(format!("collector-config-user-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let rings = base.join("rings");
    let rings_arg = rings.to_str().unwrap();
    let common = [
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--ring-dir",
        rings_arg,
    ];
    let no_such = "no-such-user-collector-test";
    let path = temp_file("no-such-user.toml", &format!("user = \"{no_such}\"\n"));
    let config = ["--config", path.to_str().unwrap()];
    let flag = ["--user", no_such];
    let root = ["--user", "root"];
    let root_file = temp_file("root-user.toml", "user = \"root\"\n");
    let root_config = ["--config", root_file.to_str().unwrap()];
    for (args, needles) in [
        (&config, ["invalid user value", no_such]),
        (&flag, ["invalid --user value", no_such]),
        (&root, ["invalid --user value", "root"]),
        (&root_config, ["invalid user value", "root"]),
    ] {
        let args: Vec<&str> = common.iter().chain(args.iter()).copied().collect();
        refused(&args, &needles);
        assert!(
            !rings.exists(),
            "{args:?}: the ring directory was created: {:?}",
            std::fs::read_dir(&rings).map(|d| d.count())
        );
    }
    // The flag wins over the key, and is the one named.
    let args: Vec<&str> = common
        .iter()
        .chain(&root_config)
        .chain(&flag)
        .copied()
        .collect();
    refused(&args, &["--user", no_such]);
    let _ = std::fs::remove_dir_all(&base);
}
