//! WebSocket (an HTTP/1.1 Upgrade) through the listener to a real WebSocket backend
//! (tungstenite): the 101 relayed, frames both ways, the close handshake; policies still
//! decide on the upgrade request.

use std::{net::SocketAddr, sync::Arc};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::{
    accept_async, client_async,
    tungstenite::{Message, protocol::CloseFrame},
};

use super::{
    PATIENCE, install,
    tls::{Ca, certificate, handshake},
};
use crate::{
    server::{serve_state_for_test, serve_tls_for_test},
    state::State,
};

/// Echoes every message of every connection, and answers a close with a close.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    // tungstenite answers a close itself, on the next poll.
                    if message.is_close() {
                        continue;
                    }
                    if ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config(backend: SocketAddr) -> String {
    format!(
        "kind: Upstream\nname: ws\nspec: {{ endpoints: [{{ address: '{backend}' }}] }}\n---\nkind: Policy\nname: deny\nspec: {{ ipAccess: {{ deny: [127.0.0.0/8] }} }}\n---\nkind: Route\nname: ws\nspec:\n  rules:\n    - matches: [{{ path: {{ type: PathPrefix, value: /denied }} }}]\n      policies: [deny]\n      backendRefs: [{{ name: ws }}]\n    - backendRefs: [{{ name: ws }}]\n"
    )
}

#[tokio::test]
async fn a_websocket_echo_round_trip_through_the_gateway() {
    let state = Arc::new(State::new(crate::state::Settings::default()));
    install(&state, 1, &config(echo_backend().await));
    let (addr, _stop) = serve_state_for_test(state).await;

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut ws, response) =
        tokio::time::timeout(PATIENCE, client_async("ws://gw.test/chat", stream))
            .await
            .expect("the handshake ends in time")
            .expect("the upgrade is relayed");
    assert_eq!(response.status(), 101);
    assert!(response.headers().contains_key("x-request-id"));

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let binary = vec![0u8, 1, 2, 255];
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(binary));
    // Larger than one read: it crosses the tunnel in pieces.
    let big = "x".repeat(100_000);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(big));

    ws.close(Some(CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    // The backend's close comes back through the tunnel, then the connection ends.
    let next = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(next, Some(Ok(Message::Close(Some(_))))),
        "{next:?}"
    );
    let end = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("ends in time");
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test]
async fn policies_decide_on_the_upgrade_request() {
    let state = Arc::new(State::new(crate::state::Settings::default()));
    install(&state, 1, &config(echo_backend().await));
    let (addr, _stop) = serve_state_for_test(state).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let refused = client_async("ws://gw.test/denied", stream)
        .await
        .unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn websockets_cross_tls_too() {
    let ca = Ca::new();
    let leaf = ca.leaf(&["gw.test"]);
    let state = Arc::new(State::new(crate::state::Settings::default()));
    let yaml = config(echo_backend().await) + &certificate("gw", &["gw.test"], &leaf, true);
    install(&state, 1, &yaml);
    let (_, tls_addr, _stop) = serve_tls_for_test(state).await;
    let stream = handshake(tls_addr, &ca.client(&[b"http/1.1"]), "gw.test")
        .await
        .unwrap();
    let (mut ws, response) = client_async("wss://gw.test/chat", stream).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tls"));
    let big = vec![7u8; 50_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
}
