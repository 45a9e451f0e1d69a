//! A gRPC backend in this process: tonic serving `echo.v1.Echo` (`proto/echo.proto`) on
//! `127.0.0.1:0`, over h2c or over TLS (ALPN h2), until its handle drops.
//!
//! What it answers is chosen by the request ([`echo::EchoRequest`]): a delay before each
//! reply, how many replies a server stream sends, and a status with details and trailing
//! metadata to end the call with ([`echo::Failure`]). Every reply names the backend.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream, wrappers::TcpListenerStream};
use tonic::{
    Code, Request, Response, Status, Streaming,
    metadata::MetadataValue,
    transport::{Identity, Server, ServerTlsConfig},
};

use self::echo::{
    EchoReply, EchoRequest, Failure,
    echo_server::{Echo, EchoServer},
};

/// Generated types, client and server of package `echo.v1`.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    missing_debug_implementations
)]
pub mod echo {
    tonic::include_proto!("echo.v1");
}

/// Generated types and server of package `types.v1` (every kind of field).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    missing_debug_implementations
)]
pub mod types {
    tonic::include_proto!("types.v1");
}

/// `types.v1.Types`: answers each request with itself, and counts the calls.
#[derive(Clone, Debug)]
struct TypesService {
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl types::types_server::Types for TypesService {
    async fn echo(
        &self,
        request: Request<types::Everything>,
    ) -> Result<Response<types::Everything>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(request.into_inner()))
    }
}

/// The response header every successful unary reply carries: the backend's name.
pub const BACKEND_HEADER: &str = "x-echo-backend";
/// The trailing metadata of a [`Failure`]: its `trailer`.
pub const TRAILER: &str = "x-echo-trailer";

/// A running gRPC backend; it stops accepting and closes its connections when dropped.
#[derive(Debug)]
pub struct GrpcBackend {
    addr: SocketAddr,
    name: Arc<str>,
    cancelled: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    // Dropping it is the server's shutdown signal.
    _shutdown: oneshot::Sender<()>,
}

// === impl GrpcBackend ===

impl GrpcBackend {
    /// Serves h2c (HTTP/2 with prior knowledge) on a free port.
    pub async fn start(name: &str) -> GrpcBackend {
        GrpcBackend::serve(name, None, ([127, 0, 0, 1], 0).into()).await
    }

    /// Serves h2c on `listen` (the `grpc-backend` program, for benchmarks).
    pub async fn listen(name: &str, listen: SocketAddr) -> GrpcBackend {
        GrpcBackend::serve(name, None, listen).await
    }

    /// Serves TLS (ALPN h2) on a free port with this certificate chain and key (PEM).
    pub async fn start_tls(name: &str, cert_pem: &str, key_pem: &str) -> GrpcBackend {
        let identity = Identity::from_pem(cert_pem, key_pem);
        GrpcBackend::serve(name, Some(identity), ([127, 0, 0, 1], 0).into()).await
    }

    async fn serve(name: &str, identity: Option<Identity>, listen: SocketAddr) -> GrpcBackend {
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("bind {listen}: {e}"));
        let addr = listener.local_addr().expect("the listener's address");
        let name: Arc<str> = name.into();
        let cancelled = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let service = EchoService {
            name: name.clone(),
            cancelled: cancelled.clone(),
            calls: calls.clone(),
        };
        let mut builder = Server::builder();
        if let Some(identity) = identity {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .expect("the backend's TLS configuration");
        }
        // As the control plane does: tonic sets no TCP_NODELAY on connections it is given.
        let incoming = TcpListenerStream::new(listener).map(|accepted| {
            let stream = accepted?;
            let _ = stream.set_nodelay(true);
            Ok::<_, std::io::Error>(stream)
        });
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = builder
            .add_service(EchoServer::new(service))
            .add_service(types::types_server::TypesServer::new(TypesService {
                calls: calls.clone(),
            }))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.await;
            });
        tokio::spawn(async move {
            if let Err(error) = server.await {
                eprintln!("grpc backend: {error}");
            }
        });
        GrpcBackend {
            addr,
            name,
            cancelled,
            calls,
            _shutdown: shutdown,
        }
    }

    /// `127.0.0.1:<port>`, for an upstream endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many response streams stopped because the client went away (the stream was reset
    /// or the connection closed) before the backend had sent everything.
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// How many unary calls reached the backend (either service's).
    pub fn unary_calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug)]
struct EchoService {
    name: Arc<str>,
    cancelled: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

type ReplyStream = ReceiverStream<Result<EchoReply, Status>>;

// === impl EchoService ===

impl EchoService {
    fn reply(&self, message: String) -> EchoReply {
        EchoReply {
            message,
            backend: self.name.to_string(),
        }
    }
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let request = request.into_inner();
        delay(request.delay_ms).await;
        if let Some(failure) = &request.fail {
            return Err(status(failure));
        }
        let mut response = Response::new(self.reply(request.message));
        if let Ok(name) = MetadataValue::try_from(&*self.name) {
            response.metadata_mut().insert(BACKEND_HEADER, name);
        }
        Ok(response)
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        request: Request<EchoRequest>,
    ) -> Result<Response<ReplyStream>, Status> {
        let request = request.into_inner();
        let (tx, rx) = mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move {
            for i in 0..request.count {
                delay(request.delay_ms).await;
                let reply = this.reply(format!("{}-{i}", request.message));
                if tx.send(Ok(reply)).await.is_err() {
                    this.cancelled.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            if let Some(failure) = &request.fail {
                let _ = tx.send(Err(status(failure))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut stream = request.into_inner();
        let mut messages = Vec::new();
        while let Some(request) = stream.message().await? {
            messages.push(request.message);
        }
        Ok(Response::new(self.reply(messages.join(","))))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        let mut stream = request.into_inner();
        let (tx, rx) = mpsc::channel(1);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let reply = match stream.message().await {
                    Ok(Some(request)) => {
                        delay(request.delay_ms).await;
                        Ok(this.reply(request.message))
                    }
                    Ok(None) => return,
                    Err(status) => Err(status),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() {
                    this.cancelled.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The backend's own pace (what the request asks for), not a test's synchronisation.
async fn delay(ms: u32) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms.into())).await;
    }
}

/// The status a [`Failure`] asks for, with its details and trailing metadata.
fn status(failure: &Failure) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Ok(trailer) = MetadataValue::try_from(failure.trailer.as_str()) {
        metadata.insert(TRAILER, trailer);
    }
    Status::with_details_and_metadata(
        Code::from(failure.code),
        failure.message.clone(),
        failure.details.clone().into(),
        metadata,
    )
}
