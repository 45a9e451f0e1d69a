//! The client streams the front ends serve: plain TCP and TLS over it. Both read and write at
//! once (a request body streams up while the response streams down), so each can be split
//! into borrowed halves: free for TCP, a shared lock for TLS.

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

/// A client connection's stream.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Borrowed read and write halves, usable at the same time.
    fn split(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    );
}

impl ClientIo for TcpStream {
    fn split(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    ) {
        TcpStream::split(self)
    }
}

impl ClientIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn split(
        &mut self,
    ) -> (
        impl AsyncRead + Unpin + Send + '_,
        impl AsyncWrite + Unpin + Send + '_,
    ) {
        tokio::io::split(self)
    }
}
