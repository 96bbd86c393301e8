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
