//! WebSocket through the real data plane binary (standalone) to a real WebSocket server.

use futures_util::{SinkExt as _, StreamExt as _};
use integration_tests::{DataPlane, DataPlaneOpts, write_file};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::{accept_async, client_async, tungstenite::Message};

use crate::support::{docs, route, upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echo_through_the_data_plane() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    // tungstenite answers a close itself, on the next poll.
                    if !message.is_close() && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    write_file(
        &file,
        docs(&[upstream("ws", &[backend]), route("ws", "/ws", "ws")]),
    );
    let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
    dp.wait_ready().await;

    let stream = TcpStream::connect(dp.http_addr()).await.unwrap();
    let (mut ws, response) = client_async("ws://gw.test/ws/chat", stream).await.unwrap();
    assert_eq!(response.status(), 101);
    for message in [
        Message::text("hello"),
        Message::binary(vec![0u8, 159, 146, 150]),
    ] {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), message);
    }
    ws.close(None).await.unwrap();
    assert!(matches!(
        ws.next().await,
        Some(Ok(Message::Close(_))) | None
    ));
}
