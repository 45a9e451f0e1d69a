//! The discovery stream end to end, over TCP, against a server on the embedded store.

use std::time::Duration;

use gateway_proto::v1::{
    self, Ack, ApplyRequest, ControlPlaneMessage, Hello, ListDataPlanesRequest, Nack,
    admin_client::AdminClient, control_plane_message, discovery_client::DiscoveryClient,
};
use tokio::sync::mpsc::Sender;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Code,
    codec::CompressionEncoding,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use super::*;
use crate::{
    Config, Server, Token, shutdown,
    store::{EmbeddedStore, conformance::upstream},
};
use gateway_proto::v1::Feature;

const ADMIN_TOKEN: &str = "admin-secret";
const DP_TOKEN: &str = "dp-secret";

struct Running {
    addr: std::net::SocketAddr,
    trigger: shutdown::ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), crate::ServerError>>,
    _dir: tempfile::TempDir,
}

async fn start(discovery: DiscoveryConfig) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
    let mut config = Config::embedded(dir.path());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_token = Token::new(ADMIN_TOKEN);
    config.dataplane_token = Token::new(DP_TOKEN);
    config.drain_timeout = Duration::from_secs(5);
    config.discovery = discovery;
    let server = Server::bind_with_store(config, store).await.expect("bind");
    let addr = server.grpc_addr();
    let (trigger, mut signal) = shutdown::channel();
    let task = tokio::spawn(server.run(async move { signal.wait().await }));
    Running {
        addr,
        trigger,
        task,
        _dir: dir,
    }
}

#[derive(Clone)]
struct Bearer(&'static str);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value: MetadataValue<_> = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| Status::internal("token"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

async fn discovery(
    addr: std::net::SocketAddr,
    token: &'static str,
) -> DiscoveryClient<InterceptedService<Channel, Bearer>> {
    DiscoveryClient::with_interceptor(channel(addr).await, Bearer(token))
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip)
}

async fn admin(addr: std::net::SocketAddr) -> AdminClient<InterceptedService<Channel, Bearer>> {
    AdminClient::with_interceptor(channel(addr).await, Bearer(ADMIN_TOKEN))
}

fn msg(message: Message) -> DataPlaneMessage {
    DataPlaneMessage {
        message: Some(message),
    }
}

fn hello(id: &str) -> DataPlaneMessage {
    msg(Message::Hello(Hello {
        id: id.into(),
        version: 0,
        build_version: "test".into(),
        address: "127.0.0.1:8080".into(),
        features: Vec::new(),
    }))
}

/// Opens a stream that starts with `first`.
async fn open(
    client: &mut DiscoveryClient<InterceptedService<Channel, Bearer>>,
    first: DataPlaneMessage,
) -> Result<(Sender<DataPlaneMessage>, Streaming<ControlPlaneMessage>), Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(first).await.expect("send");
    let inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    Ok((tx, inbound))
}

/// The next snapshot, skipping heartbeats.
async fn next_snapshot(inbound: &mut Streaming<ControlPlaneMessage>) -> v1::Snapshot {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("a message in time")
            .expect("stream ok")
            .expect("stream open");
        match next.message {
            Some(control_plane_message::Message::Snapshot(snapshot)) => return snapshot,
            Some(control_plane_message::Message::Heartbeat(_)) | None => continue,
            Some(other) => panic!("a data plane without features got {other:?}"),
        }
    }
}

/// The next snapshot or delta, unpacked, skipping heartbeats.
async fn next_config(
    inbound: &mut Streaming<ControlPlaneMessage>,
) -> control_plane_message::Message {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("a message in time")
            .expect("stream ok")
            .expect("stream open");
        match next.message {
            Some(control_plane_message::Message::Heartbeat(_)) | None => continue,
            Some(control_plane_message::Message::Packed(gz)) => {
                return gateway_proto::delta::unpack(&gz, 1 << 24)
                    .expect("unpacks")
                    .message
                    .expect("a message inside");
            }
            Some(other) => return other,
        }
    }
}

/// Reads until the stream ends: `Ok` for a clean end, the status for an error.
async fn until_the_end(inbound: &mut Streaming<ControlPlaneMessage>) -> Result<(), Status> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), inbound.message())
            .await
            .expect("ended in time");
        match next {
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(()),
            Err(status) => return Err(status),
        }
    }
}

/// Waits until the reflector publishes `version`, seen from a probe data plane's stream.
async fn published(
    client: &mut DiscoveryClient<InterceptedService<Channel, Bearer>>,
    version: i64,
) {
    let (tx, mut inbound) = open(client, hello("probe")).await.expect("open probe");
    loop {
        let snapshot = next_snapshot(&mut inbound).await;
        if snapshot.version >= version {
            return;
        }
        tx.send(msg(Message::Ack(Ack {
            version: snapshot.version,
        })))
        .await
        .expect("probe ack");
    }
}

async fn apply(addr: std::net::SocketAddr, port: u16) -> i64 {
    admin(addr)
        .await
        .apply(ApplyRequest {
            resources: vec![upstream("users", port)],
            dry_run: false,
        })
        .await
        .expect("apply")
        .into_inner()
        .version
}

/// Polls the registry until `check` holds for the data plane `id` (or its absence).
async fn eventually(
    addr: std::net::SocketAddr,
    id: &str,
    check: impl Fn(Option<&DataPlaneStatus>) -> bool,
) {
    let mut client = admin(addr).await;
    for _ in 0..200 {
        let all = client
            .list_data_planes(ListDataPlanesRequest {})
            .await
            .expect("list")
            .into_inner()
            .data_planes;
        if check(all.iter().find(|s| s.id == id)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the registry entry of {id} never reached the expected state");
}

fn fast() -> DiscoveryConfig {
    DiscoveryConfig {
        heartbeat_interval: Duration::from_millis(100),
        dead_after: Duration::from_secs(5),
        control_plane: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_acks_nacks_and_registry() {
    let server = start(fast()).await;
    let addr = server.addr;
    let v1 = apply(addr, 9001).await;
    let mut client = discovery(addr, DP_TOKEN).await;
    let (tx, mut inbound) = open(&mut client, hello("dp-1")).await.expect("open");

    let first = next_snapshot(&mut inbound).await;
    assert_eq!(first.version, v1);
    assert_eq!(first.resources.len(), 1);
    eventually(addr, "dp-1", |s| s.is_some_and(|s| s.pending_version == v1)).await;

    // Unanswered: newer versions wait, and only the newest is sent after the answer.
    let v2 = apply(addr, 9002).await;
    let v3 = apply(addr, 9003).await;
    assert!(v3 > v2);
    // A second data plane sees v3 only once the reflector has published it: until then an
    // answer from dp-1 would rightly get v2.
    published(&mut client, v3).await;
    tx.send(msg(Message::Ack(Ack { version: v1 })))
        .await
        .expect("ack");
    let newest = next_snapshot(&mut inbound).await;
    assert_eq!(newest.version, v3, "a slow data plane skips versions");
    eventually(addr, "dp-1", |s| {
        s.is_some_and(|s| s.acked_version == v1 && s.pending_version == v3)
    })
    .await;

    tx.send(msg(Message::Nack(Nack {
        version: v3,
        reason: "bad route".into(),
    })))
    .await
    .expect("nack");
    eventually(addr, "dp-1", |s| {
        s.is_some_and(|s| {
            s.nacked_version == v3
                && s.last_error == "bad route"
                && s.acked_version == v1
                && s.pending_version == 0
                && !s.control_plane.is_empty()
                && s.connected_at.is_some()
        })
    })
    .await;

    drop(tx);
    drop(inbound);
    eventually(addr, "dp-1", |s| s.is_none()).await;
    server.trigger.trigger();
    server.task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_fresh_deployment_gets_an_empty_configuration() {
    // Nothing stored yet: the data plane still gets a (empty) configuration, so that it can
    // become ready and answer 404 instead of 503 not_ready.
    let server = start(fast()).await;
    let mut client = discovery(server.addr, DP_TOKEN).await;
    let (tx, mut inbound) = open(&mut client, hello("dp-empty")).await.expect("open");
    let first = next_snapshot(&mut inbound).await;
    assert!(first.resources.is_empty());
    tx.send(msg(Message::Ack(Ack {
        version: first.version,
    })))
    .await
    .expect("ack");
    eventually(server.addr, "dp-empty", |s| {
        s.is_some_and(|s| s.acked_version == first.version && s.pending_version == 0)
    })
    .await;
    server.trigger.trigger();
    server.task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn hello_first_and_tokens() {
    let server = start(fast()).await;
    let mut client = discovery(server.addr, DP_TOKEN).await;
    let status = open(&mut client, msg(Message::Ack(Ack { version: 1 })))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut wrong = discovery(server.addr, ADMIN_TOKEN).await;
    let status = open(&mut wrong, hello("dp-x")).await.expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut admin_with_dp_token =
        AdminClient::with_interceptor(channel(server.addr).await, Bearer(DP_TOKEN));
    let status = admin_with_dp_token
        .list_data_planes(ListDataPlanesRequest {})
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);
    server.trigger.trigger();
    server.task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn silent_data_planes_are_dropped_and_shutdown_ends_streams() {
    let server = start(DiscoveryConfig {
        heartbeat_interval: Duration::from_secs(60),
        dead_after: Duration::from_millis(300),
        control_plane: String::new(),
    })
    .await;
    let mut client = discovery(server.addr, DP_TOKEN).await;
    let (_tx, mut inbound) = open(&mut client, hello("dp-silent")).await.expect("open");
    // The empty configuration comes first (it is never answered), then the drop.
    let end = until_the_end(&mut inbound).await;
    assert_eq!(end.expect_err("dropped").code(), Code::Unavailable);

    let (_tx, mut inbound) = open(&mut client, hello("dp-2")).await.expect("open");
    server.trigger.trigger();
    // Ended, cleanly or as shutting down.
    if let Err(status) = until_the_end(&mut inbound).await {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    server.task.await.expect("join").expect("clean stop");
}

fn hello_with(id: &str, version: i64, features: &[Feature]) -> DataPlaneMessage {
    msg(Message::Hello(Hello {
        id: id.into(),
        version,
        build_version: "test".into(),
        address: String::new(),
        features: features.iter().map(|f| *f as i32).collect(),
    }))
}

fn ack(version: i64) -> DataPlaneMessage {
    msg(Message::Ack(Ack { version }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_after_the_first_snapshot_and_a_full_one_on_resync() {
    use control_plane_message::Message as M;

    let server = start(fast()).await;
    let addr = server.addr;
    let v1 = apply(addr, 9001).await;
    let mut client = discovery(addr, DP_TOKEN).await;
    // The reflector publishes a write a moment after the commit: a stream opened before
    // would start from the version before.
    published(&mut client, v1).await;
    for features in [&[Feature::Delta][..], &[Feature::Delta, Feature::Packed]] {
        let (tx, mut inbound) = open(&mut client, hello_with("dp-d", 0, features))
            .await
            .expect("open");
        // Nothing held: the whole configuration first.
        let M::Snapshot(first) = next_config(&mut inbound).await else {
            panic!("the first message must be a snapshot");
        };
        let base = first.version;
        assert!(base >= v1);
        tx.send(ack(base)).await.expect("ack");

        // One change: only it, against the acknowledged version.
        let v2 = apply(addr, 9100 + base as u16).await;
        let M::Delta(delta) = next_config(&mut inbound).await else {
            panic!("a change must come as a delta");
        };
        assert_eq!((delta.base_version, delta.version), (base, v2));
        assert_eq!(delta.resources.len(), 1);
        assert_eq!(delta.resources[0].name, "users");
        assert!(delta.removed.is_empty());
        tx.send(ack(v2)).await.expect("ack");

        // The data plane cannot apply the next one: Resync brings the whole configuration.
        let v3 = apply(addr, 9200 + base as u16).await;
        let M::Delta(delta) = next_config(&mut inbound).await else {
            panic!("a delta");
        };
        assert_eq!(delta.base_version, v2);
        tx.send(msg(Message::Resync(v1::Resync { version: v2 })))
            .await
            .expect("resync");
        let M::Snapshot(whole) = next_config(&mut inbound).await else {
            panic!("a resync must be answered with a snapshot");
        };
        assert_eq!(whole.version, v3);
        tx.send(ack(v3)).await.expect("ack");
        drop(tx);

        // Reconnecting with a version the control plane knows the changes since: a delta.
        let (tx, mut inbound) = open(&mut client, hello_with("dp-d", v2, features))
            .await
            .expect("reopen");
        let M::Delta(delta) = next_config(&mut inbound).await else {
            panic!("a reconnect at a known version gets a delta");
        };
        assert_eq!((delta.base_version, delta.version), (v2, v3));
        drop(tx);

        // At a version it does not know: the whole snapshot.
        let (tx, mut inbound) = open(&mut client, hello_with("dp-d", 1_000_000, features))
            .await
            .expect("reopen");
        assert!(matches!(next_config(&mut inbound).await, M::Snapshot(s) if s.version == v3));

        // A data plane that cannot use even the whole configuration is not sent it again (it
        // would loop): the next message is the next version.
        tx.send(msg(Message::Resync(v1::Resync { version: 0 })))
            .await
            .expect("resync");
        let v4 = apply(addr, 9300 + base as u16).await;
        assert!(matches!(next_config(&mut inbound).await, M::Snapshot(s) if s.version == v4));
    }
    server.trigger.trigger();
    let _ = server.task.await;
}

mod services;
