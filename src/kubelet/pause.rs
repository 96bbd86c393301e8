//! `hyperkube pause`: the process of every pod's infra container. It holds the pod's namespaces
//! open by doing nothing, reaps zombies (it is PID 1 of its container, and of the pod when the
//! pod shares its process namespace), and exits at once on SIGTERM or SIGINT so pods stop fast.
//! Mirrors upstream's `build/pause/linux/pause.c`.

use tokio::signal::unix::{SignalKind, signal};

/// Runs until SIGTERM or SIGINT; reaps every exited child on SIGCHLD.
pub async fn run() -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut child = signal(SignalKind::child())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = child.recv() => reap(),
        }
    }
}

fn reap() {
    // Collect every exited child without blocking; no children at all is not an error here.
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
}
