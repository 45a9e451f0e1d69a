//! The subscriber against an in-process fake control plane (a real tonic server on TCP).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use gateway_proto::v1::{
    self, ControlPlaneMessage, DataPlaneMessage, control_plane_message, data_plane_message,
    discovery_server::{Discovery, DiscoveryServer},
    resource::Spec,
};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming, codec::CompressionEncoding};

use gateway_proto::ResourceKind;

use super::*;
use crate::{cache, table::Source};

const PATIENCE: Duration = Duration::from_secs(10);

/// One stream as the fake control plane saw it.
struct Opened {
    authorization: Option<String>,
    inbound: Streaming<DataPlaneMessage>,
    outbound: mpsc::Sender<Result<ControlPlaneMessage, Status>>,
}

struct Fake {
    opened: mpsc::Sender<Opened>,
}

#[tonic::async_trait]
impl Discovery for Fake {
    type StreamStream = ReceiverStream<Result<ControlPlaneMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<DataPlaneMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (outbound, rx) = mpsc::channel(4);
        let _ = self
            .opened
            .send(Opened {
                authorization,
                inbound: request.into_inner(),
                outbound,
            })
            .await;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn fake_control_plane() -> (SocketAddr, Arc<Mutex<mpsc::Receiver<Opened>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (opened, streams) = mpsc::channel(4);
    let service = DiscoveryServer::new(Fake { opened })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, Arc::new(Mutex::new(streams)))
}

async fn next_message(opened: &mut Opened) -> data_plane_message::Message {
    loop {
        let message = tokio::time::timeout(PATIENCE, opened.inbound.message())
            .await
            .expect("a message in time")
            .expect("a healthy stream")
            .expect("an open stream");
        match message.message {
            Some(data_plane_message::Message::Heartbeat(_)) => continue,
            Some(message) => return message,
            None => panic!("an empty message"),
        }
    }
}

/// Waits until the cache writer has written `version` (it writes shortly after a swap).
async fn wait_cached(state: &State, version: i64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while state.cached_version() != Some(version) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cache holds {:?}, not {version}",
            state.cached_version()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn snapshot(version: i64, backend: &str) -> ControlPlaneMessage {
    let resources = vec![
        v1::Resource {
            name: "u".into(),
            version: 0,
            spec: Some(Spec::Upstream(v1::UpstreamSpec {
                endpoints: vec![v1::Endpoint {
                    address: "127.0.0.1:9001".into(),
                    weight: None,
                }],
                ..Default::default()
            })),
        },
        v1::Resource {
            name: "r".into(),
            version: 0,
            spec: Some(Spec::Route(v1::RouteSpec {
                hostnames: vec![],
                rules: vec![v1::RouteRule {
                    matches: vec![],
                    backend_refs: vec![v1::BackendRef {
                        name: backend.into(),
                        weight: None,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })),
        },
    ];
    ControlPlaneMessage {
        message: Some(control_plane_message::Message::Snapshot(v1::Snapshot {
            version,
            resources,
        })),
    }
}

/// A running subscriber with a cache directory of its own.
struct Subscriber {
    cache_dir: tempfile::TempDir,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn subscribe(urls: Vec<String>, token: Option<&str>, id: &str) -> Subscriber {
    let cache_dir = tempfile::tempdir().unwrap();
    let config = ControlPlaneConfig {
        urls,
        token: token.map(str::to_owned),
        id: id.into(),
        cache_dir: cache_dir.path().to_owned(),
        tls: Default::default(),
    };
    let state = Arc::new(State::new(crate::state::Settings::default()));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(
        config,
        "127.0.0.1:8080".into(),
        state.clone(),
        None,
        stopped,
    ));
    Subscriber {
        cache_dir,
        state,
        stop,
        task,
    }
}

#[tokio::test]
async fn hello_ack_nack_cache_and_reconnect() {
    let (addr, streams) = fake_control_plane().await;
    // Nothing listens on the first URL: the subscriber must move on to the second.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let urls = vec![format!("http://{closed}"), format!("http://{addr}")];
    let Subscriber {
        cache_dir,
        state,
        stop,
        task,
    } = subscribe(urls, Some("s3cret"), "dp-1");

    let mut streams = streams.lock().await;
    let mut opened = tokio::time::timeout(PATIENCE, streams.recv())
        .await
        .expect("a stream in time")
        .unwrap();
    assert_eq!(opened.authorization.as_deref(), Some("Bearer s3cret"));
    let data_plane_message::Message::Hello(hello) = next_message(&mut opened).await else {
        panic!("hello first");
    };
    assert_eq!(hello.id, "dp-1");
    assert_eq!(hello.version, 0);
    assert_eq!(hello.address, "127.0.0.1:8080");
    assert_eq!(hello.build_version, env!("CARGO_PKG_VERSION"));

    opened.outbound.send(Ok(snapshot(5, "u"))).await.unwrap();
    match next_message(&mut opened).await {
        data_plane_message::Message::Ack(ack) => assert_eq!(ack.version, 5),
        other => panic!("expected an ACK, got {other:?}"),
    }
    assert_eq!(state.version(), 5);
    assert_eq!(state.table().unwrap().source(), Source::ControlPlane);
    wait_cached(&state, 5).await;
    assert_eq!(
        cache::load(cache_dir.path(), None)
            .unwrap()
            .unwrap()
            .version,
        5
    );

    opened
        .outbound
        .send(Ok(snapshot(6, "missing")))
        .await
        .unwrap();
    match next_message(&mut opened).await {
        data_plane_message::Message::Nack(nack) => {
            assert_eq!(nack.version, 6);
            assert!(
                nack.reason.contains("spec.rules[0].backendRefs[0].name"),
                "{}",
                nack.reason
            );
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
    assert_eq!(state.version(), 5);
    assert_eq!(
        cache::load(cache_dir.path(), None)
            .unwrap()
            .unwrap()
            .version,
        5
    );

    // The control plane goes away: the data plane comes back, reporting the version it holds.
    drop(opened);
    let mut reopened = loop {
        let mut candidate = tokio::time::timeout(PATIENCE, streams.recv())
            .await
            .expect("a new stream in time")
            .unwrap();
        if let data_plane_message::Message::Hello(hello) = next_message(&mut candidate).await {
            assert_eq!(hello.version, 5);
            break candidate;
        }
    };
    reopened.outbound.send(Ok(snapshot(7, "u"))).await.unwrap();
    assert!(matches!(
        next_message(&mut reopened).await,
        data_plane_message::Message::Ack(v1::Ack { version: 7 })
    ));

    let _ = stop.send(true);
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();

    // A restart serves the cache at once.
    let restarted = State::new(crate::state::Settings::default());
    let restored = restore_cache(cache_dir.path(), &restarted).expect("the cache is served");
    assert_eq!(restored.version(), 7);
    let table = restarted.table().unwrap();
    assert_eq!((table.version(), table.source()), (7, Source::Cache));

    // A corrupt cache is refused without a panic.
    std::fs::write(cache::path(cache_dir.path()), b"GWSNAP\x00\x01 torn").unwrap();
    let fresh = State::new(crate::state::Settings::default());
    assert!(restore_cache(cache_dir.path(), &fresh).is_none());
    assert!(fresh.table().is_none());
}

fn delta(
    base: i64,
    version: i64,
    resources: Vec<v1::Resource>,
    removed: &[(ResourceKind, &str)],
) -> v1::Delta {
    v1::Delta {
        version,
        base_version: base,
        resources,
        removed: removed
            .iter()
            .map(|(kind, name)| gateway_proto::delta::key(*kind, name))
            .collect(),
    }
}

fn send_delta(delta: v1::Delta) -> ControlPlaneMessage {
    ControlPlaneMessage {
        message: Some(control_plane_message::Message::Delta(delta)),
    }
}

/// The resources of `snapshot(_, backend)`, by name.
fn resource(name: &str, backend: &str) -> v1::Resource {
    let Some(control_plane_message::Message::Snapshot(s)) = snapshot(0, backend).message else {
        unreachable!()
    };
    let mut found = s
        .resources
        .into_iter()
        .find(|r| r.name == name.get(..1).unwrap_or(name))
        .unwrap();
    if let Some(Spec::Route(spec)) = &mut found.spec {
        // Its own host: two catch-all routes on one host would conflict.
        spec.hostnames = vec![format!("{name}.example")];
    }
    found.name = name.into();
    found
}

#[tokio::test]
async fn deltas_apply_to_what_is_held_and_a_refused_one_is_undone() {
    let (addr, streams) = fake_control_plane().await;
    let Subscriber {
        cache_dir,
        state,
        stop,
        task,
    } = subscribe(vec![format!("http://{addr}")], None, "dp-d");
    let mut streams = streams.lock().await;
    let mut opened = tokio::time::timeout(PATIENCE, streams.recv())
        .await
        .unwrap()
        .unwrap();
    let data_plane_message::Message::Hello(hello) = next_message(&mut opened).await else {
        panic!("hello first");
    };
    assert_eq!(
        hello.features,
        [
            v1::Feature::Delta as i32,
            v1::Feature::Packed as i32,
            v1::Feature::Services as i32
        ]
    );
    let answer = async |opened: &mut Opened, message| {
        opened.outbound.send(Ok(message)).await.unwrap();
        next_message(opened).await
    };
    use data_plane_message::Message as M;

    assert!(matches!(
        answer(&mut opened, snapshot(5, "u")).await,
        M::Ack(v1::Ack { version: 5 })
    ));
    // Added: a second route.
    let added = send_delta(delta(5, 6, vec![resource("r2", "u")], &[]));
    assert!(matches!(
        answer(&mut opened, added).await,
        M::Ack(v1::Ack { version: 6 })
    ));
    assert!(state.table().unwrap().has_route("r2"));
    // Removing the upstream both routes use: refused as a whole, the last good table kept.
    let broken = send_delta(delta(6, 7, vec![], &[(ResourceKind::Upstream, "u")]));
    match answer(&mut opened, broken).await {
        M::Nack(nack) => {
            assert_eq!(nack.version, 7);
            assert!(
                nack.reason.contains("backendRefs[0].name"),
                "{}",
                nack.reason
            );
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
    assert_eq!(state.version(), 6);
    // The refused delta was undone: the next one, against 6, applies (packed this time).
    let mut moved = resource("u", "u");
    if let Some(Spec::Upstream(spec)) = &mut moved.spec {
        spec.endpoints[0].address = "127.0.0.1:9002".into();
    }
    let packed = ControlPlaneMessage {
        message: Some(control_plane_message::Message::Packed(
            gateway_proto::delta::pack(&send_delta(delta(
                6,
                8,
                vec![moved],
                &[(ResourceKind::Route, "r")],
            ))),
        )),
    };
    assert!(matches!(
        answer(&mut opened, packed).await,
        M::Ack(v1::Ack { version: 8 })
    ));
    let table = state.table().unwrap();
    assert!(!table.has_route("r") && table.has_route("r2"));
    assert_eq!(
        table.upstream("u").unwrap().endpoints()[0].address(),
        "127.0.0.1:9002"
    );
    // What is cached is what is held: the result of the deltas, sorted.
    wait_cached(&state, 8).await;
    let cached = cache::load(cache_dir.path(), None).unwrap().unwrap();
    assert_eq!(cached.version, 8);
    let names: Vec<_> = cached.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["u", "r2"]);

    // A delta against another version: Resync.
    let stale = send_delta(delta(3, 10, vec![], &[]));
    assert!(matches!(
        answer(&mut opened, stale).await,
        M::Resync(v1::Resync { version: 8 })
    ));
    assert_eq!(state.version(), 8);
    // A removal of something never held (created and removed since the base) is nothing.
    let unknown = send_delta(delta(8, 9, vec![], &[(ResourceKind::Route, "nope")]));
    assert!(matches!(
        answer(&mut opened, unknown).await,
        M::Ack(v1::Ack { version: 9 })
    ));
    // The whole configuration then replaces what is held.
    assert!(matches!(
        answer(&mut opened, snapshot(10, "u")).await,
        M::Ack(v1::Ack { version: 10 })
    ));
    assert!(state.table().unwrap().has_route("r"));

    let _ = stop.send(true);
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
}

mod services;
