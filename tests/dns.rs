//! `hyperkube dns` against a real in-process apiserver, asked with real DNS packets over UDP and
//! TCP on loopback. EndpointSlices are written directly, as the endpointslice controller would;
//! a small nameserver of the test's own, on another loopback address, stands in for the host's
//! resolvers that other names are forwarded to.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestServer, flags, start, wait_for};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(20);
/// What the stand-in upstream answers for every A question.
const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// An apiserver and `hyperkube dns` against it; both stop when dropped.
struct Cluster {
    server: TestServer,
    dns: SocketAddr,
    healthz: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

impl Cluster {
    /// Starts the DNS server on free loopback ports with `extra` flags (which must name the
    /// upstreams: the host's own are never asked), and waits until it answers from the caches.
    async fn start(extra: &[&str]) -> Self {
        let server = start().await;
        let mut argv = vec![
            "--master",
            &server.url,
            "--dns-bind-address=127.0.0.1",
            "--dns-port=0",
            "--healthz-port=0",
        ];
        argv.extend_from_slice(extra);
        let dns = hyperkube::dns::Server::new(flags(&argv)).await.unwrap();
        let (addr, healthz) = (dns.dns_addr(), dns.healthz_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { dns.run(shutdown).await.unwrap() }
        });
        wait_for("the zone to be built", TIMEOUT, || async {
            let answer = ask(addr, "dns-version.cluster.local.", RecordType::TXT).await;
            (answer.metadata.response_code == ResponseCode::NoError).then_some(())
        })
        .await;
        Self {
            server,
            dns: addr,
            healthz,
            shutdown,
            task,
        }
    }

    async fn create<K>(&self, namespace: &str, obj: serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(obj).unwrap();
        Api::<K>::namespaced(self.server.client.clone(), namespace)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    /// The answer to `name`, once it has `count` records.
    async fn answer_with(&self, name: &str, qtype: RecordType, count: usize) -> Message {
        wait_for(&format!("{count} {qtype} records for {name}"), TIMEOUT, || async {
            let answer = ask(self.dns, name, qtype).await;
            (answer.answers.len() == count).then_some(answer)
        })
        .await
    }
}

fn question(name: &str, qtype: RecordType) -> Message {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    query
}

/// Sends `packet` over UDP and returns the reply.
async fn exchange_udp(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, server).await.unwrap();
    let mut buf = vec![0; 65535];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("no answer within 5s")
        .unwrap();
    buf.truncate(n);
    buf
}

/// Sends each of `packets` on one TCP connection and returns the replies.
async fn exchange_tcp(server: SocketAddr, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut replies = Vec::new();
    for packet in packets {
        stream.write_u16(packet.len() as u16).await.unwrap();
        stream.write_all(packet).await.unwrap();
        let read = async {
            let len = stream.read_u16().await.unwrap();
            let mut reply = vec![0; usize::from(len)];
            stream.read_exact(&mut reply).await.unwrap();
            reply
        };
        replies.push(
            tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .expect("no answer within 5s"),
        );
    }
    replies
}

async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let query = question(name, qtype);
    let reply = Message::from_vec(&exchange_udp(server, &query.to_vec().unwrap()).await).unwrap();
    assert_eq!(reply.metadata.id, query.metadata.id);
    reply
}

fn rdata(message: &Message) -> Vec<String> {
    let mut data: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    data
}

/// A nameserver standing in for the host's: answers every A question with
/// [`UPSTREAM_ANSWER`], over UDP and TCP, and remembers the names it was asked.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr).await?;
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65535];
            loop {
                tokio::select! {
                    Ok((n, peer)) = udp.recv_from(&mut buf) => {
                        let reply = Self::reply(&buf[..n], &log);
                        udp.send_to(&reply, peer).await.unwrap();
                    }
                    Ok((mut stream, _)) = tcp.accept() => {
                        let len = stream.read_u16().await.unwrap();
                        let mut query = vec![0; usize::from(len)];
                        stream.read_exact(&mut query).await.unwrap();
                        let reply = Self::reply(&query, &log);
                        stream.write_u16(reply.len() as u16).await.unwrap();
                        stream.write_all(&reply).await.unwrap();
                    }
                }
            }
        });
        Ok(Self { addr, asked, task })
    }

    /// On port 53 of a loopback address of its own, as a resolv.conf names nameservers.
    async fn start_on_port_53() -> Self {
        for _ in 0..16 {
            let [a, b, ..] = *uuid::Uuid::new_v4().as_bytes();
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 53, a, b.max(1))), 53);
            match Self::start(addr).await {
                Ok(upstream) => return upstream,
                Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(err) => panic!("binding the stand-in nameserver to {addr} failed (port 53 needs root): {err}"),
            }
        }
        panic!("no free port 53 on 127.53.0.0/16")
    }

    fn reply(query: &[u8], asked: &Mutex<Vec<String>>) -> Vec<u8> {
        let query = Message::from_vec(query).unwrap();
        let question = query.queries[0].clone();
        asked.lock().unwrap().push(question.name().to_ascii());
        let mut reply = Message::response(query.metadata.id, OpCode::Query);
        reply.metadata.recursion_available = true;
        if question.query_type() == RecordType::A {
            let record = Record::from_rdata(question.name().clone(), 60, RData::A(A(UPSTREAM_ANSWER)));
            reply.add_answer(record);
        }
        reply.add_query(question);
        reply.to_vec().unwrap()
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

async fn with_upstream() -> (Cluster, Upstream) {
    let upstream = Upstream::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cluster = Cluster::start(&[&format!("--nameservers={}", upstream.addr)]).await;
    (cluster, upstream)
}

#[tokio::test]
async fn cluster_ip_services_answer_a_srv_and_ptr() {
    let (cluster, _upstream) = with_upstream().await;
    cluster
        .create::<Service>(
            "default",
            json!({"metadata": {"name": "web"}, "spec": {"ports": [
                {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
        )
        .await;
    let a = cluster
        .answer_with("web.default.svc.cluster.local.", RecordType::A, 1)
        .await;
    assert!(a.metadata.authoritative);
    assert_eq!(a.answers[0].ttl, 30);
    let ip: Ipv4Addr = rdata(&a)[0].parse().unwrap();
    let services: Api<Service> = Api::namespaced(cluster.server.client.clone(), "default");
    let cluster_ip = services.get("web").await.unwrap().spec.unwrap().cluster_ip.unwrap();
    assert_eq!(ip.to_string(), cluster_ip);

    let srv = ask(
        cluster.dns,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(rdata(&srv), ["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(srv.additionals.len(), 1, "the target's address rides along");
    let udp = ask(cluster.dns, "_dns._udp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(rdata(&udp), ["0 100 53 web.default.svc.cluster.local."]);

    let [a, b, c, d] = ip.octets();
    let ptr = ask(cluster.dns, &format!("{d}.{c}.{b}.{a}.in-addr.arpa."), RecordType::PTR).await;
    assert_eq!(rdata(&ptr), ["web.default.svc.cluster.local."]);
}

#[tokio::test]
async fn headless_services_answer_ready_endpoints_hostnames_srv_and_ptr() {
    let (cluster, _upstream) = with_upstream().await;
    cluster
        .create::<Service>(
            "default",
            json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
        )
        .await;
    let slice = json!({
        "metadata": {"name": "db-abc", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.0.2"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.0.3"], "hostname": "db-1", "conditions": {"ready": true}},
            {"addresses": ["10.244.0.4"], "hostname": "db-2", "conditions": {"ready": false}}]
    });
    cluster.create::<EndpointSlice>("default", slice).await;

    let a = cluster
        .answer_with("db.default.svc.cluster.local.", RecordType::A, 2)
        .await;
    assert_eq!(rdata(&a), ["10.244.0.2", "10.244.0.3"]);
    let host = ask(cluster.dns, "db-1.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rdata(&host), ["10.244.0.3"]);
    let srv = ask(cluster.dns, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(
        rdata(&srv),
        [
            "0 50 5432 db-0.db.default.svc.cluster.local.",
            "0 50 5432 db-1.db.default.svc.cluster.local."
        ]
    );
    let ptr = ask(cluster.dns, "2.0.244.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(rdata(&ptr), ["db-0.db.default.svc.cluster.local."]);
    let unready = ask(cluster.dns, "db-2.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(unready.metadata.response_code, ResponseCode::NXDomain);

    // The last endpoint turns ready: the answer follows the slice.
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.server.client.clone(), "default");
    let ready = json!({"endpoints": [
        {"addresses": ["10.244.0.2"], "hostname": "db-0", "conditions": {"ready": true}},
        {"addresses": ["10.244.0.4"], "hostname": "db-2", "conditions": {"ready": true}}]});
    slices
        .patch("db-abc", &PatchParams::default(), &Patch::Merge(ready))
        .await
        .unwrap();
    wait_for("db-2 to resolve", TIMEOUT, || async {
        let answer = ask(cluster.dns, "db.default.svc.cluster.local.", RecordType::A).await;
        (rdata(&answer) == ["10.244.0.2", "10.244.0.4"]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn unknown_names_in_the_cluster_domain_are_nxdomain_and_other_types_nodata() {
    let (cluster, upstream) = with_upstream().await;
    cluster
        .create::<Service>(
            "default",
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await;
    cluster
        .answer_with("web.default.svc.cluster.local.", RecordType::A, 1)
        .await;

    for name in [
        "nope.default.svc.cluster.local.",
        "web.other.svc.cluster.local.",
        "x.cluster.local.",
    ] {
        let answer = ask(cluster.dns, name, RecordType::A).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert_eq!(answer.authorities[0].record_type(), RecordType::SOA, "{name}");
    }
    let aaaa = ask(cluster.dns, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    let namespace = ask(cluster.dns, "default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(namespace.metadata.response_code, ResponseCode::NoError);
    assert!(
        upstream.asked().is_empty(),
        "cluster names are never forwarded: {:?}",
        upstream.asked()
    );
}

#[tokio::test]
async fn external_name_services_answer_a_cname_and_its_target_s_addresses() {
    let (cluster, upstream) = with_upstream().await;
    cluster
        .create::<Service>(
            "default",
            json!({"metadata": {"name": "search"}, "spec": {"type": "ExternalName", "externalName": "search.example"}}),
        )
        .await;
    let answer = cluster
        .answer_with("search.default.svc.cluster.local.", RecordType::A, 2)
        .await;
    assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(answer.answers[0].data.to_string(), "search.example.");
    assert_eq!(answer.answers[1].data.to_string(), UPSTREAM_ANSWER.to_string());
    assert!(upstream.asked().contains(&"search.example.".to_owned()));
}

#[tokio::test]
async fn other_names_are_forwarded_to_the_resolv_conf_nameservers() {
    let upstream = Upstream::start_on_port_53().await;
    let dir = tempfile::tempdir().unwrap();
    let resolv_conf = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!("search example\nnameserver {}\n", upstream.addr.ip()),
    )
    .unwrap();
    let cluster = Cluster::start(&[&format!("--resolv-conf={}", resolv_conf.display())]).await;

    let answer = ask(cluster.dns, "www.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(rdata(&answer), [UPSTREAM_ANSWER.to_string()]);
    assert_eq!(upstream.asked(), ["www.example."]);
    let query = question("tcp.example.", RecordType::A).to_vec().unwrap();
    let reply = Message::from_vec(&exchange_tcp(cluster.dns, &[query]).await[0]).unwrap();
    assert_eq!(rdata(&reply), [UPSTREAM_ANSWER.to_string()]);
    assert_eq!(upstream.asked(), ["www.example.", "tcp.example."]);
}

#[tokio::test]
async fn a_silent_upstream_makes_servfail() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cluster = Cluster::start(&[&format!("--nameservers={}", silent.local_addr().unwrap())]).await;
    let answer = ask(cluster.dns, "www.example.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(answer.queries[0].name().to_ascii(), "www.example.");
}

#[tokio::test]
async fn garbage_is_formerr_and_the_server_keeps_answering() {
    let (cluster, _upstream) = with_upstream().await;
    // A header claiming one question, then bytes that are no name.
    let mut garbage = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    garbage.extend_from_slice(&[0x3f, 0xff, 0x00, 0x07]);
    let reply = Message::from_vec(&exchange_udp(cluster.dns, &garbage).await).unwrap();
    assert_eq!(reply.metadata.id, 0xabcd);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // Two questions in one query are refused the same way (RFC 9619).
    let mut two = question("a.example.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("b.example.").unwrap(), RecordType::A));
    let reply = Message::from_vec(&exchange_udp(cluster.dns, &two.to_vec().unwrap()).await).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // Over TCP too, and the connection goes on serving.
    let good = question("dns-version.cluster.local.", RecordType::TXT)
        .to_vec()
        .unwrap();
    let replies = exchange_tcp(cluster.dns, &[garbage.clone(), good]).await;
    assert_eq!(
        Message::from_vec(&replies[0]).unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    assert_eq!(rdata(&Message::from_vec(&replies[1]).unwrap()), ["1.1.0"]);
    // Packets too short for a header get no answer; they must not stop the server.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for junk in [&[][..], &[0x00], &[0xff; 11]] {
        socket.send_to(junk, cluster.dns).await.unwrap();
    }
    let answer = ask(cluster.dns, "dns-version.cluster.local.", RecordType::TXT).await;
    assert_eq!(rdata(&answer), ["1.1.0"]);
}

#[tokio::test]
async fn answers_too_large_for_udp_are_truncated_and_whole_over_tcp() {
    let (cluster, _upstream) = with_upstream().await;
    cluster
        .create::<Service>(
            "default",
            json!({"metadata": {"name": "big"}, "spec": {"clusterIP": "None"}}),
        )
        .await;
    let endpoints: Vec<_> = (1..=60)
        .map(|i| json!({"addresses": [format!("10.244.1.{i}")], "conditions": {"ready": true}}))
        .collect();
    let slice = json!({"metadata": {"name": "big-1", "labels": {"kubernetes.io/service-name": "big"}},
                       "addressType": "IPv4", "endpoints": endpoints});
    cluster.create::<EndpointSlice>("default", slice).await;
    let name = "big.default.svc.cluster.local.";
    let query = question(name, RecordType::A).to_vec().unwrap();
    let whole = wait_for("60 addresses over TCP", TIMEOUT, || async {
        let reply = Message::from_vec(&exchange_tcp(cluster.dns, std::slice::from_ref(&query)).await[0]).unwrap();
        (reply.answers.len() == 60).then_some(reply)
    })
    .await;
    assert!(!whole.metadata.truncation);

    let udp = ask(cluster.dns, name, RecordType::A).await;
    assert!(udp.metadata.truncation, "60 A records do not fit in 512 bytes");
    // A client that offers a larger payload with EDNS gets them all over UDP.
    let mut edns_query = question(name, RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns_query.set_edns(edns);
    let reply = Message::from_vec(&exchange_udp(cluster.dns, &edns_query.to_vec().unwrap()).await).unwrap();
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 60);
    assert!(reply.edns.is_some(), "an EDNS query gets an OPT record back");
}

#[tokio::test]
async fn healthz_and_metrics_report_the_queries() {
    let (cluster, _upstream) = with_upstream().await;
    ask(cluster.dns, "nope.default.svc.cluster.local.", RecordType::AAAA).await;
    assert!(get(cluster.healthz, "/healthz").await.starts_with("HTTP/1.1 200"));
    let metrics = get(cluster.healthz, "/metrics").await;
    for line in [
        r#"coredns_dns_requests_total{proto="udp",type="AAAA"} 1"#,
        r#"coredns_dns_responses_total{rcode="NXDOMAIN"} 1"#,
        r#"coredns_dns_request_duration_seconds_count{type="AAAA"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

/// The raw HTTP/1.1 response to `GET path`.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: dns\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
