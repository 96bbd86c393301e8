//! Reaching the apiserver: the `--master` and `--kubeconfig` flags every part but the apiserver
//! shares, as upstream's components have them.

use std::path::{Path, PathBuf};

/// How a component finds the apiserver.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientArgs {
    /// The address of the apiserver (overrides any value in --kubeconfig).
    #[arg(long)]
    pub master: Option<String>,
    /// Path to a kubeconfig file with the apiserver's address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

impl ClientArgs {
    /// A client for these flags; an error when neither is given.
    pub async fn connect(&self) -> Result<kube::Client, String> {
        connect(self.master.as_deref(), self.kubeconfig.as_deref())
            .await?
            .ok_or_else(|| "give the apiserver's address with --master or --kubeconfig".to_owned())
    }
}

/// A client for `server` and/or `kubeconfig` (the server overriding the file's); `None` when
/// neither is given.
pub async fn connect(server: Option<&str>, kubeconfig: Option<&Path>) -> Result<Option<kube::Client>, String> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading {}: {}", path.display(), crate::error_chain(&e)))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| format!("{}: {}", path.display(), crate::error_chain(&e)))?
        }
        None => match server {
            Some(server) => kube::Config::new(parse(server)?),
            None => return Ok(None),
        },
    };
    if let (Some(server), Some(_)) = (server, kubeconfig) {
        config.cluster_url = parse(server)?;
    }
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|e| crate::error_chain(&e))
}

fn parse(server: &str) -> Result<http::Uri, String> {
    // Upstream accepts a bare host:port for --master.
    let with_scheme = if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    };
    with_scheme.parse().map_err(|e| format!("--master {server:?}: {e}"))
}
