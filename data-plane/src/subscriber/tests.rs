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

use super::*;
use crate::table::Source;

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

#[tokio::test]
async fn hello_ack_nack_cache_and_reconnect() {
    let (addr, streams) = fake_control_plane().await;
    // Nothing listens on the first URL: the subscriber must move on to the second.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let config = ControlPlaneConfig {
        urls: vec![format!("http://{closed}"), format!("http://{addr}")],
        token: Some("s3cret".into()),
        id: "dp-1".into(),
        cache_dir: cache_dir.path().to_owned(),
    };
    let state = Arc::new(State::new(crate::state::Settings::default()));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(config, "127.0.0.1:8080".into(), state.clone(), stopped));

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
    assert_eq!(cache::load(cache_dir.path()).unwrap().unwrap().version, 5);

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
    assert_eq!(cache::load(cache_dir.path()).unwrap().unwrap().version, 5);

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
    restore_cache(cache_dir.path(), &restarted);
    let table = restarted.table().unwrap();
    assert_eq!((table.version(), table.source()), (7, Source::Cache));

    // A corrupt cache is refused without a panic.
    std::fs::write(cache::path(cache_dir.path()), b"GWSNAP\x00\x01 torn").unwrap();
    let fresh = State::new(crate::state::Settings::default());
    restore_cache(cache_dir.path(), &fresh);
    assert!(fresh.table().is_none());
}
