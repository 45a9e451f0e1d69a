//! How the gateway reaches an endpoint: a TCP connection, with TLS over it when the upstream
//! says so ([`tls`]: the client configuration, compiled with the table). Both are one stream
//! type, so the HTTP/1 codec and the HTTP/2 client run over either, and both come from one
//! [`Connector`] per endpoint pool.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpStream, tcp},
};
use tokio_rustls::client::TlsStream;

pub mod tls;

pub use self::tls::TlsClient;

/// Opens connections to endpoints: TCP, then the TLS handshake if the upstream has TLS. The
/// connect timeout covers both.
#[derive(Clone, Debug, Default)]
pub struct Connector {
    tls: Option<Arc<TlsClient>>,
    /// The upstream's TLS did not compile (validation makes this unreachable): every connect
    /// fails with this, rather than fall back to plaintext.
    broken: Option<Arc<str>>,
    /// The DNS name an endpoint's address was resolved from: the TLS server name (SNI, and
    /// the name the certificate must hold) when the upstream sets no `sni`, so that an
    /// endpoint expanded into IP addresses is still verified as the host it was named by.
    host: Option<Arc<str>>,
}

/// A connection to an endpoint.
#[derive(Debug)]
pub(crate) enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

// === impl Connector ===

impl Connector {
    pub fn new(tls: Option<Arc<TlsClient>>) -> Self {
        Self {
            tls,
            broken: None,
            host: None,
        }
    }

    /// A connector that refuses to connect, for TLS settings that did not compile.
    pub fn broken(reason: &str) -> Self {
        Self {
            tls: None,
            broken: Some(reason.into()),
            host: None,
        }
    }

    /// The same connector for addresses resolved from the DNS name `host`: TLS names `host`
    /// instead of the address it connects to.
    #[must_use]
    pub fn for_host(&self, host: &Arc<str>) -> Self {
        Self {
            host: Some(host.clone()),
            ..self.clone()
        }
    }

    /// The DNS name its addresses were resolved from, if they were.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Whether connections are TLS (or would be, for a broken one).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some() || self.broken.is_some()
    }

    /// A connection to `address` (`host:port`), within `timeout`.
    pub(crate) async fn connect(
        &self,
        address: &str,
        timeout: Duration,
    ) -> io::Result<UpstreamStream> {
        if let Some(reason) = &self.broken {
            return Err(io::Error::other(format!(
                "the upstream's TLS settings: {reason}"
            )));
        }
        let connect = async {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            match &self.tls {
                None => Ok(UpstreamStream::Plain(stream)),
                Some(tls) => {
                    let host = self.host.as_deref().unwrap_or_else(|| host_of(address));
                    tls.handshake(host, stream).await
                }
            }
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }
}

/// The host of `host:port` (or `[v6]:port`), without brackets.
pub(crate) fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

// === impl UpstreamStream ===

impl UpstreamStream {
    /// Borrowed read and write halves, usable at the same time: free for TCP, a shared lock
    /// for TLS.
    pub(crate) fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Self::Plain(stream) => {
                let (read, write) = stream.split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Self::Tls(stream) => {
                let (read, write) = tokio::io::split(&mut **stream);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(stream) => stream,
            Self::Tls(stream) => stream.get_ref().0,
        }
    }

    /// Whether an idle connection is still open: nothing to read and no EOF. The socket's
    /// readiness is cached by the runtime, so an untouched connection answers without a
    /// system call. Under TLS the bytes are only looked at (a close_notify or anything else
    /// arriving on an idle connection means it is not to be reused either way).
    pub(crate) fn is_open(&self) -> bool {
        let mut byte = [0u8; 1];
        match self {
            Self::Plain(stream) => {
                matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Self::Tls(_) => {
                let mut buf = ReadBuf::new(&mut byte);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                self.tcp().poll_peek(&mut cx, &mut buf).is_pending()
            }
        }
    }

    /// Reads what is there into the spare capacity of `buf` (reserved by the caller); pending
    /// (with the waker registered) when nothing is.
    pub(crate) fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(stream) => loop {
                match stream.try_read_buf(buf) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        std::task::ready!(stream.poll_read_ready(cx))?;
                    }
                    read => return Poll::Ready(read),
                }
            },
            Self::Tls(stream) => {
                // Safe code reads into initialised bytes: the spare capacity is zeroed first.
                let start = buf.len();
                buf.resize(buf.capacity(), 0);
                let mut read = ReadBuf::new(&mut buf[start..]);
                let polled = Pin::new(&mut **stream).poll_read(cx, &mut read);
                let n = read.filled().len();
                buf.truncate(start + n);
                polled.map_ok(|()| n)
            }
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(&mut **stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(&mut **stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(&mut **stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(&mut **stream).poll_shutdown(cx),
        }
    }
}

/// The read half of a split [`UpstreamStream`].
pub(crate) enum ReadHalf<'a> {
    Plain(tcp::ReadHalf<'a>),
    Tls(tokio::io::ReadHalf<&'a mut TlsStream<TcpStream>>),
}

/// The write half of a split [`UpstreamStream`].
pub(crate) enum WriteHalf<'a> {
    Plain(tcp::WriteHalf<'a>),
    Tls(tokio::io::WriteHalf<&'a mut TlsStream<TcpStream>>),
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(half) => Pin::new(half).poll_read(cx, buf),
            Self::Tls(half) => Pin::new(half).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(half) => Pin::new(half).poll_write(cx, buf),
            Self::Tls(half) => Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(half) => Pin::new(half).poll_flush(cx),
            Self::Tls(half) => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(half) => Pin::new(half).poll_shutdown(cx),
            Self::Tls(half) => Pin::new(half).poll_shutdown(cx),
        }
    }
}
