//! The `hyperkube` binary: picks a component by its first argument (`hyperkube apiserver ...`) or
//! by the name it was started under (a symlink called `kube-apiserver`), sets up logging and
//! signals, and runs it. No other logic lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Every way the binary can be called: as `hyperkube`, or directly as a component.
#[derive(Parser)]
#[command(multicall = true)]
enum Applet {
    /// The multicall entry point.
    Hyperkube(Hyperkube),
    #[command(flatten)]
    Component(Component),
}

#[derive(clap::Args)]
#[command(
    version,
    about = "Kubernetes' server side as one binary",
    arg_required_else_help = true
)]
struct Hyperkube {
    /// Create a symlink per component (kube-apiserver, kubelet, ...) in DIR and exit.
    #[arg(long, value_name = "DIR", exclusive = true)]
    make_symlinks: Option<PathBuf>,
    #[command(subcommand)]
    component: Option<Component>,
}

#[derive(Subcommand)]
enum Component {
    /// The API server.
    #[command(visible_alias = "kube-apiserver")]
    Apiserver(hyperkube::apiserver::Args),
    /// The controller manager.
    #[command(visible_alias = "kube-controller-manager")]
    ControllerManager(Box<hyperkube::controller::Args>),
    /// The scheduler.
    #[command(visible_alias = "kube-scheduler")]
    Scheduler(Box<hyperkube::scheduler::Args>),
    /// The node agent.
    Kubelet(Box<hyperkube::kubelet::Args>),
    /// The service proxy.
    #[command(visible_alias = "kube-proxy")]
    Proxy(Box<hyperkube::proxy::Args>),
    /// The cluster DNS server.
    #[command(visible_alias = "kube-dns")]
    Dns(Box<hyperkube::dns::Args>),
    /// Start a local cluster: a containerized kubelet running the control plane as static pods.
    Up(Box<hyperkube::local::UpArgs>),
    /// Remove the local cluster (and, with --purge, its data).
    Down(Box<hyperkube::local::DownArgs>),
    /// Show what of the local cluster runs, and whether it is healthy.
    Status(Box<hyperkube::local::Common>),
    /// The infra container's process: holds a pod's namespaces, reaps zombies, exits on SIGTERM.
    Pause,
    /// Print the version.
    Version,
}

/// The names `--make-symlinks` creates, each running its component when invoked.
const SYMLINKS: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kube-dns",
    "apiserver",
    "controller-manager",
    "scheduler",
    "proxy",
    "dns",
];

/// Whether the command line is `hyperkube pause` (or `pause` through its symlink), exactly.
fn is_pause(mut args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let program = args.next().map(PathBuf::from);
    let rest: Vec<_> = args.collect();
    match program.as_deref().and_then(|p| p.file_name()) {
        Some(name) if name == "pause" => rest.is_empty(),
        _ => rest.len() == 1 && rest[0] == "pause",
    }
}

fn pause() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build();
    match runtime.map(|rt| rt.block_on(hyperkube::kubelet::pause::run())) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) | Err(e) => {
            eprintln!("hyperkube pause: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // Every pod runs a pause process: it starts before the command line is parsed, so each one
    // holds as little memory as it can.
    if is_pause(std::env::args_os()) {
        return pause();
    }
    let component = match Applet::parse() {
        Applet::Hyperkube(Hyperkube {
            make_symlinks: Some(dir),
            ..
        }) => return make_symlinks(&dir),
        Applet::Hyperkube(Hyperkube { component: Some(c), .. }) | Applet::Component(c) => c,
        Applet::Hyperkube(_) => return ExitCode::from(2),
    };
    match component {
        Component::Apiserver(args) => {
            init_tracing(args.v);
            run(|shutdown| hyperkube::apiserver::run(args, shutdown))
        }
        Component::ControllerManager(args) => {
            init_tracing(args.v);
            run(|shutdown| hyperkube::controller::run(*args, shutdown))
        }
        Component::Scheduler(args) => {
            init_tracing(args.v);
            run(|shutdown| hyperkube::scheduler::run(*args, shutdown))
        }
        Component::Kubelet(args) => {
            init_tracing(args.v);
            run(|shutdown| hyperkube::kubelet::run(*args, shutdown))
        }
        Component::Proxy(args) => {
            init_tracing(args.v);
            run(|shutdown| hyperkube::proxy::run(*args, shutdown))
        }
        Component::Dns(args) => {
            init_tracing(args.v);
            run(|shutdown| hyperkube::dns::run(*args, shutdown))
        }
        Component::Pause => pause(),
        Component::Up(args) => {
            init_tracing(args.common.v);
            run(|shutdown| hyperkube::local::up(*args, shutdown))
        }
        Component::Down(args) => {
            init_tracing(args.common.v);
            run(|shutdown| hyperkube::local::down(*args, shutdown))
        }
        Component::Status(args) => {
            init_tracing(args.v);
            run(|shutdown| hyperkube::local::status(*args, shutdown))
        }
        Component::Version => {
            println!(
                "hyperkube {} (Kubernetes {})",
                env!("CARGO_PKG_VERSION"),
                hyperkube::KUBERNETES_VERSION
            );
            ExitCode::SUCCESS
        }
    }
}

fn make_symlinks(dir: &Path) -> ExitCode {
    let target = match std::env::current_exe() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("hyperkube: cannot find my own path: {e}");
            return ExitCode::FAILURE;
        }
    };
    for name in SYMLINKS {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(&target, &link) {
            eprintln!("hyperkube: creating {}: {e}", link.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Maps upstream's `--v=N` onto tracing levels; `RUST_LOG` overrides it.
fn init_tracing(v: u8) {
    let level = match v {
        0..=1 => "info",
        2..=4 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("hyperkube={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Runs a component on a multi-threaded runtime until it returns or a signal stops it. The first
/// SIGINT or SIGTERM asks for a graceful stop; a second one exits at once.
fn run<F, Fut, E>(component: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hyperkube: starting the runtime failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(watch_signals(shutdown.clone()));
        let result = component(shutdown.clone()).await;
        signals.abort();
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hyperkube: {}", hyperkube::error_chain(&e));
                ExitCode::FAILURE
            }
        }
    })
}

async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    for _ in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if shutdown.is_cancelled() {
            std::process::exit(130);
        }
        tracing::info!("shutting down; signal again to exit at once");
        shutdown.cancel();
    }
}
