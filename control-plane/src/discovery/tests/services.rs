//! Registered instances reach the data planes that take them: the whole registry first, then
//! each change; a clean end of the registration's stream deregisters at once.

use gateway_proto::v1::{
    ListServicesRequest, RegisterKeepAlive, RegisterRequest, Registration, Services,
    register_request,
};

use super::*;

fn registration(id: &str, port: u16) -> RegisterRequest {
    RegisterRequest {
        message: Some(register_request::Message::Register(Registration {
            service: "users".into(),
            id: id.into(),
            address: format!("127.0.0.1:{port}"),
            weight: None,
            ttl: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
        })),
    }
}

/// The next Services message, skipping heartbeats and configurations (answered with an ACK).
async fn next_services(
    tx: &Sender<DataPlaneMessage>,
    inbound: &mut Streaming<ControlPlaneMessage>,
) -> Services {
    loop {
        match next_config(inbound).await {
            control_plane_message::Message::Services(services) => return services,
            control_plane_message::Message::Snapshot(snapshot) => {
                tx.send(msg(Message::Ack(Ack {
                    version: snapshot.version,
                })))
                .await
                .expect("ack");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn addresses(services: &Services, service: &str) -> Option<Vec<String>> {
    services
        .services
        .iter()
        .find(|s| s.service == service)
        .map(|s| s.endpoints.iter().map(|e| e.address.clone()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_reach_data_planes_that_take_them() {
    let server = start(DiscoveryConfig::default()).await;
    let addr = server.addr;
    let mut admin = admin(addr).await;

    // A registration is answered with its key; it is listed while it lives.
    let (register_tx, register_rx) = tokio::sync::mpsc::channel(4);
    register_tx
        .send(registration("a", 9001))
        .await
        .expect("send");
    let mut answers = admin
        .register(ReceiverStream::new(register_rx))
        .await
        .expect("register")
        .into_inner();
    let first = answers.message().await.expect("answer").expect("open");
    assert_eq!(first.key, "registry/users/a");
    assert_eq!(first.ttl.map(|t| t.seconds), Some(10));
    register_tx
        .send(RegisterRequest {
            message: Some(register_request::Message::KeepAlive(RegisterKeepAlive {})),
        })
        .await
        .expect("keep alive");
    assert!(answers.message().await.expect("renewed").is_some());
    let listed = admin
        .list_services(ListServicesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .instances;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].id.as_str(),
            listed[0].address.as_str(),
            listed[0].weight
        ),
        ("a", "127.0.0.1:9001", 1)
    );

    // A data plane that takes them gets the whole registry first, before any configuration.
    let mut client = discovery(addr, DP_TOKEN).await;
    let (tx, mut inbound) = open(&mut client, hello_with("dp-s", 0, &[Feature::Services]))
        .await
        .expect("open");
    let mut services = next_services(&tx, &mut inbound).await;
    assert!(
        services.complete,
        "the first Services message is the whole registry"
    );
    while addresses(&services, "users") != Some(vec!["127.0.0.1:9001".into()]) {
        services = next_services(&tx, &mut inbound).await;
    }

    // A clean end of the registration's stream deregisters: the stream ends, and the data
    // plane is told the service has no instance left.
    drop(register_tx);
    assert!(answers.message().await.expect("ends cleanly").is_none());
    let gone = next_services(&tx, &mut inbound).await;
    assert!(!gone.complete, "a change is sent, not the whole registry");
    assert_eq!(addresses(&gone, "users"), Some(vec![]));
    assert!(
        admin
            .list_services(ListServicesRequest::default())
            .await
            .expect("list")
            .into_inner()
            .instances
            .is_empty()
    );

    // Bad registrations name the field.
    for (request, field) in [
        (
            RegisterRequest {
                message: Some(register_request::Message::KeepAlive(RegisterKeepAlive {})),
            },
            "the first message must be register",
        ),
        (registration("a/b", 9001), "register.id: "),
        (registration("a", 0), "register.address: "),
    ] {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(request).await.expect("send");
        let status = admin
            .register(ReceiverStream::new(rx))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }

    // Registering takes the admin token, like every admin call.
    let mut stranger = AdminClient::with_interceptor(channel(addr).await, Bearer("wrong"));
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(registration("a", 9001)).await.expect("send");
    let status = stranger
        .register(ReceiverStream::new(rx))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::Unauthenticated);

    server.trigger.trigger();
    let _ = server.task.await;
}
