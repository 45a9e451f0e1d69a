//! The `gateway.v1.Discovery` gRPC service, written out rather than generated so that its
//! responses are `ControlPlaneMessage`s encoded already: a snapshot or delta is encoded (and
//! packed) once per version and the same `Bytes` go to every stream that needs them.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{BufMut as _, Bytes};
use gateway_proto::v1::DataPlaneMessage;
use tonic::{
    Status,
    codec::{Codec, CompressionEncoding, EnabledCompressionEncodings, EncodeBuf},
    codegen::{Body, BoxFuture, Service, StdError, http},
    server::{Grpc, NamedService, StreamingService},
};

use super::DiscoveryService;

/// The gRPC path of the one method.
const STREAM_PATH: &str = "/gateway.v1.Discovery/Stream";

/// An encoded `ControlPlaneMessage`, or the status that ends the stream.
pub(crate) type Outbound = Result<Bytes, Status>;

/// The tower service for [`DiscoveryService`], for `tonic::transport::Server::add_service`.
#[derive(Clone, Debug)]
pub struct DiscoveryServer {
    inner: Arc<DiscoveryService>,
    accept: EnabledCompressionEncodings,
    send: EnabledCompressionEncodings,
    max_decoding: Option<usize>,
    max_encoding: Option<usize>,
}

impl DiscoveryServer {
    pub fn new(inner: DiscoveryService) -> Self {
        Self {
            inner: Arc::new(inner),
            accept: EnabledCompressionEncodings::default(),
            send: EnabledCompressionEncodings::default(),
            max_decoding: None,
            max_encoding: None,
        }
    }

    /// Accept requests compressed with `encoding`.
    #[must_use]
    pub fn accept_compressed(mut self, encoding: CompressionEncoding) -> Self {
        self.accept.enable(encoding);
        self
    }

    /// Compress responses with `encoding` for data planes that accept it (older ones: newer
    /// data planes ask for `packed` messages instead, compressed once for all).
    #[must_use]
    pub fn send_compressed(mut self, encoding: CompressionEncoding) -> Self {
        self.send.enable(encoding);
        self
    }

    #[must_use]
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding = Some(limit);
        self
    }

    #[must_use]
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.max_encoding = Some(limit);
        self
    }
}

impl NamedService for DiscoveryServer {
    const NAME: &'static str = "gateway.v1.Discovery";
}

impl<B> Service<http::Request<B>> for DiscoveryServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != STREAM_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let this = self.clone();
        Box::pin(async move {
            let mut grpc = Grpc::new(DiscoveryCodec)
                .apply_compression_config(this.accept, this.send)
                .apply_max_message_size_config(this.max_decoding, this.max_encoding);
            Ok(grpc.streaming(Method(this.inner), req).await)
        })
    }
}

struct Method(Arc<DiscoveryService>);

impl StreamingService<DataPlaneMessage> for Method {
    type Response = Bytes;
    type ResponseStream = tokio_stream::wrappers::ReceiverStream<Outbound>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, Status>;

    fn call(
        &mut self,
        request: tonic::Request<tonic::Streaming<DataPlaneMessage>>,
    ) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.open(request).await })
    }
}

/// Decodes data-plane messages with prost; "encodes" control-plane messages by copying the
/// bytes they were encoded to once.
#[derive(Clone, Copy, Debug, Default)]
struct DiscoveryCodec;

impl Codec for DiscoveryCodec {
    type Encode = Bytes;
    type Decode = DataPlaneMessage;
    type Encoder = Self;
    type Decoder = tonic_prost::ProstDecoder<DataPlaneMessage>;

    fn encoder(&mut self) -> Self::Encoder {
        Self
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

impl tonic::codec::Encoder for DiscoveryCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}
