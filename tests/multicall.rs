//! The binary answers to its component names: as `hyperkube COMPONENT` and through the symlinks
//! `--make-symlinks` creates; components not built yet say so and exit 2.

use std::process::Command;

const HYPERKUBE: &str = env!("CARGO_BIN_EXE_hyperkube");

#[test]
fn symlinks_run_their_component() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(HYPERKUBE)
        .arg("--make-symlinks")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["kube-apiserver", "apiserver"] {
        let out = Command::new(dir.path().join(name)).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--insecure-port"),
            "{name} --help shows the apiserver's flags: {help}"
        );
        assert!(help.contains("--v <V>"), "{name} --help shows --v: {help}");
    }
    let out = Command::new(dir.path().join("kube-proxy"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--iptables-sync-period"));
}

#[test]
fn first_argument_picks_the_component() {
    let out = Command::new(HYPERKUBE).args(["apiserver", "--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--service-cluster-ip-range"));
    let out = Command::new(HYPERKUBE)
        .args(["controller-manager", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--leader-elect"));
    let out = Command::new(HYPERKUBE)
        .args(["apiserver", "--insecure-port=notaport"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap rejects a bad flag value with exit 2");
    let out = Command::new(HYPERKUBE).arg("nonsense").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn pause_runs_until_sigterm_and_exits_zero() {
    let mut child = Command::new(HYPERKUBE).arg("pause").spawn().unwrap();
    // Signal it once it handles SIGTERM (bit 15 of the caught-signals mask), not before.
    let caught = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).unwrap_or("0");
        u64::from_str_radix(mask.trim(), 16).unwrap_or(0) & (1 << (15 - 1)) != 0
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !caught() {
        assert!(std::time::Instant::now() < deadline, "pause never handled SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(child.try_wait().unwrap().is_none(), "pause keeps running");
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success(), "pause exits 0 on SIGTERM");
    // With anything after it, `pause` is not the pause process but a usage error.
    let out = Command::new(HYPERKUBE).args(["pause", "--bogus"]).output().unwrap();
    assert!(!out.status.success());
}
