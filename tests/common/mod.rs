//! What the in-process integration tests share: a real apiserver on an ephemeral loopback port,
//! its embedded store in a temporary directory, and component flags parsed as the binary would.
#![allow(dead_code, unreachable_pub)] // each test crate uses its own part of this module

use hyperkube::apiserver::{ApiServer, Args, Config};
use kube::Client;
use tokio_util::sync::CancellationToken;

/// A running apiserver; stops when dropped.
pub struct TestServer {
    pub client: Client,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts an apiserver on a free loopback port.
pub async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let args = Args {
        insecure_bind_address: "127.0.0.1".parse().unwrap(),
        insecure_port: 0,
        data_dir: dir.path().to_path_buf(),
        service_cluster_ip_range: "10.0.0.0/24".into(),
        service_node_port_range: "30000-32767".into(),
        watch_cache_size: 1000,
        v: 0,
    };
    let shutdown = CancellationToken::new();
    let server = ApiServer::new(Config::try_from(args).unwrap(), shutdown.clone())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        server.run(token).await.unwrap();
    });
    let url = format!("http://{addr}");
    let config = kube::Config::new(url.parse().unwrap());
    TestServer {
        client: Client::try_from(config).unwrap(),
        url,
        shutdown,
        _dir: dir,
        task: Some(task),
    }
}

/// A component's flags from `argv` (without the program name), as `hyperkube COMPONENT` parses them.
pub fn flags<A: clap::Args>(argv: &[&str]) -> A {
    #[derive(clap::Parser)]
    struct Cli<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    <Cli<A> as clap::Parser>::parse_from(std::iter::once("test").chain(argv.iter().copied())).args
}
