//! RequestMirror: a copy of each request goes to a shadow upstream, and the client's answer
//! never depends on it: not when the shadow answers, hangs, or is gone.

use integration_tests::{eventually, get};

use super::{Gateway, Sample, backend::TestBackend};
use crate::support::{docs, upstream_with};

fn config(main: std::net::SocketAddr, shadow: std::net::SocketAddr, percent: u32) -> String {
    docs(&[
        upstream_with("main", &[main], ""),
        upstream_with("shadow", &[shadow], ""),
        format!(
            "kind: Route\nname: mirrored\nspec:\n  rules:\n    - matches: [{{ path: {{ type: PathPrefix, value: /m }} }}]\n      backendRefs: [{{ name: main }}]\n      filters:\n        - type: RequestMirror\n          requestMirror: {{ backendRef: {{ name: shadow }}, percent: {percent} }}\n"
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_gets_copies_and_the_client_never_waits_for_it() {
    let main = TestBackend::start("main").await;
    main.set_holds(false);
    let shadow = TestBackend::start("shadow").await;
    let gw = Gateway::start(&config(main.addr(), shadow.addr(), 100), 1).await;

    // Copies arrive, and the client's answers are the main backend's.
    for i in 0..20 {
        let response = get(&gw.dp().url(&format!("/m/{i}")), &[]).await.unwrap();
        assert!(Sample::of(&response).is("main"), "{}", response.text());
    }
    eventually("20 copies at the shadow", || {
        let seen = shadow.requests();
        async move {
            anyhow::ensure!(seen >= 20, "{seen} copies so far");
            Ok(())
        }
    })
    .await;
    eprintln!("copies at the shadow: {}", shadow.requests());

    // A shadow that hangs: its copies are held, the client's requests are answered meanwhile.
    for i in 0..5 {
        let response = get(&gw.dp().url(&format!("/m/{i}/slow")), &[])
            .await
            .unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    shadow.wait_held(5).await;
    assert_eq!(main.held(), 0);
    assert_eq!(main.slow_arrivals(), 5);
    shadow.release();

    // A shadow that is gone: nothing changes for the client.
    drop(shadow);
    for i in 0..10 {
        let response = get(&gw.dp().url(&format!("/m/gone-{i}")), &[])
            .await
            .unwrap();
        assert!(Sample::of(&response).is("main"), "{}", response.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_mirrors_about_that_share() {
    let main = TestBackend::start("main-p").await;
    let shadow = TestBackend::start("shadow-p").await;
    let gw = Gateway::start(&config(main.addr(), shadow.addr(), 20), 1).await;
    for i in 0..400 {
        let response = get(&gw.dp().url(&format!("/m/{i}")), &[]).await.unwrap();
        assert_eq!(response.status, 200);
    }
    // Copies may still be on their way: wait until the count stops at a plausible share.
    eventually("a fifth of 400 copied", || {
        let seen = shadow.requests();
        async move {
            anyhow::ensure!((40..=130).contains(&seen), "{seen} copies");
            Ok(())
        }
    })
    .await;
    eprintln!("copies of 400 at 20 %: {}", shadow.requests());
    assert_eq!(main.requests(), 400);
}

/// A shadow that records the raw bytes of each copy it gets.
struct Recorder {
    addr: std::net::SocketAddr,
    copies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let copies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = copies.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    // A copy is whole once its (chunked) body's last chunk is in.
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 8192];
                    while !seen.ends_with(b"0\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    shared.lock().unwrap().push(seen);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        Self { addr, copies, task }
    }

    fn copies(&self) -> Vec<Vec<u8>> {
        self.copies.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A body of unknown length (chunked, in two pieces) is kept whole before the request goes
/// on, and the shadow's copy carries it; the main backend's answer is the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_body_is_mirrored_with_its_request() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let main = TestBackend::start("main-b").await;
    let shadow = Recorder::start().await;
    let gw = Gateway::start(&config(main.addr(), shadow.addr, 100), 1).await;
    let mut client = tokio::net::TcpStream::connect(gw.dp().http_addr())
        .await
        .unwrap();
    client
        .write_all(b"POST /m/body HTTP/1.1\r\nhost: gw.test\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst-\r\n")
        .await
        .unwrap();
    client.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\"backend\":\"main-b\"") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    eventually("the copy at the shadow", || {
        let copies = shadow.copies();
        async move {
            let [copy] = copies.as_slice() else {
                anyhow::bail!("{} copies", copies.len());
            };
            let copy = String::from_utf8_lossy(copy);
            anyhow::ensure!(
                copy.starts_with("POST /m/body HTTP/1.1\r\n")
                    && copy.contains("first-")
                    && copy.contains("second"),
                "the copy: {copy:?}"
            );
            Ok(())
        }
    })
    .await;
}

/// A shadow spoken to over HTTP/2 (H2C) gets its copies as HTTP/2 requests, body included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_shadow_gets_its_copies_over_http2() {
    use http_body_util::BodyExt as _;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shadow = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            record
                                .lock()
                                .unwrap()
                                .push((path, body.unwrap_or_default().to_vec()));
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    let main = TestBackend::start("main-h2").await;
    let config = config(main.addr(), shadow, 100).replace(
        "name: shadow\nspec:\n",
        "name: shadow\nspec:\n  protocol: H2C\n",
    );
    assert!(config.contains("protocol: H2C"), "{config}");
    let gw = Gateway::start(&config, 1).await;
    let response = integration_tests::request(
        http::Method::POST,
        &gw.dp().url("/m/copied"),
        &[("content-type", "text/plain")],
        bytes::Bytes::from_static(b"hello"),
    )
    .await
    .unwrap();
    assert!(Sample::of(&response).is("main-h2"), "{}", response.text());
    eventually("the copy at the HTTP/2 shadow", || {
        let seen = seen.lock().unwrap().clone();
        async move {
            anyhow::ensure!(
                seen == [("/m/copied".to_owned(), b"hello".to_vec())],
                "{seen:?}"
            );
            Ok(())
        }
    })
    .await;
}
