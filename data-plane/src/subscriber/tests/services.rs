//! Services messages: an upstream with `discovery` compiles its endpoints from them, is
//! recompiled when they change (the endpoints that stay keep their state), and nothing is
//! answered or versioned.

use super::*;

fn discovered(version: i64) -> ControlPlaneMessage {
    let mut message = snapshot(version, "u");
    if let Some(control_plane_message::Message::Snapshot(snapshot)) = &mut message.message
        && let Some(Spec::Upstream(spec)) = &mut snapshot.resources[0].spec
    {
        spec.endpoints.clear();
        spec.discovery = Some(Box::new(v1::UpstreamDiscovery {
            service: "users".into(),
        }));
    }
    message
}

fn services(complete: bool, entries: &[(&str, &[u16])]) -> ControlPlaneMessage {
    let services = entries
        .iter()
        .map(|(service, ports)| v1::ServiceInstances {
            service: (*service).into(),
            endpoints: ports
                .iter()
                .map(|port| v1::Endpoint {
                    address: format!("127.0.0.1:{port}"),
                    weight: None,
                })
                .collect(),
        })
        .collect();
    ControlPlaneMessage {
        message: Some(control_plane_message::Message::Services(v1::Services {
            services,
            complete,
        })),
    }
}

fn addresses(state: &State) -> Vec<String> {
    state
        .table()
        .and_then(|t| t.upstream("u").cloned())
        .map(|u| {
            u.endpoints()
                .iter()
                .map(|e| e.address().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_addresses(state: &State, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while addresses(state) != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream u has {:?}, not {expected:?}",
            addresses(state)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn discovered_upstreams_follow_the_services_messages() {
    let (addr, streams) = fake_control_plane().await;
    let Subscriber {
        cache_dir: _cache_dir,
        state,
        stop,
        task,
    } = subscribe(vec![format!("http://{addr}")], None, "dp-s");
    let mut streams = streams.lock().await;
    let mut opened = tokio::time::timeout(PATIENCE, streams.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        next_message(&mut opened).await,
        data_plane_message::Message::Hello(_)
    ));
    use data_plane_message::Message as M;

    // The whole registry before the configuration: the first compile has the instances.
    let send =
        async |opened: &mut Opened, message| opened.outbound.send(Ok(message)).await.unwrap();
    send(&mut opened, services(true, &[("users", &[9001, 9002])])).await;
    send(&mut opened, discovered(5)).await;
    // Services are not answered: the next answer is the snapshot's.
    assert!(matches!(
        next_message(&mut opened).await,
        M::Ack(v1::Ack { version: 5 })
    ));
    assert_eq!(addresses(&state), ["127.0.0.1:9001", "127.0.0.1:9002"]);
    let kept = {
        let table = state.table().unwrap();
        let upstream = table.upstream("u").unwrap();
        std::ptr::from_ref(upstream.endpoints()[0].state())
    };

    // A change: recompiled and swapped, same version and source; the endpoint that stays
    // keeps its live state.
    send(&mut opened, services(false, &[("users", &[9001, 9003])])).await;
    wait_addresses(&state, &["127.0.0.1:9001", "127.0.0.1:9003"]).await;
    let table = state.table().unwrap();
    assert_eq!((table.version(), table.source()), (5, Source::ControlPlane));
    assert!(table.has_route("r"));
    assert!(std::ptr::eq(
        table.upstream("u").unwrap().endpoints()[0].state(),
        kept
    ));
    drop(table);

    // Another service changing recompiles nothing of ours; none left is no endpoint at all.
    send(&mut opened, services(false, &[("orders", &[9100])])).await;
    send(&mut opened, services(false, &[("users", &[])])).await;
    wait_addresses(&state, &[]).await;
    let upstream = state.table().unwrap().upstream("u").cloned().unwrap();
    assert!(
        upstream.choose(None).is_err(),
        "no endpoint: nothing to pick"
    );

    // The whole registry again (a reconnect) brings them back.
    send(&mut opened, services(true, &[("users", &[9004])])).await;
    wait_addresses(&state, &["127.0.0.1:9004"]).await;

    stop.send_replace(true);
    let _ = task.await;
}
