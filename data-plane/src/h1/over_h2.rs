//! An HTTP/1 client's exchange over an HTTP/2 upstream (H2C, H2): the head the codec wrote
//! becomes the upstream request, the client's body is decoded from its HTTP/1 framing and sent
//! as the stream's window allows while the response comes back (full duplex, as with an
//! HTTP/1.1 upstream), and the response is framed for HTTP/1: a length when the upstream gave
//! one, chunks otherwise. Trailers are not passed to HTTP/1 clients.

use std::{future::poll_fn, pin::Pin, sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    time::Sleep,
};

use super::{
    body::{self, Body, BodyError, Framing},
    exchange::{self, Buffers, Done, Failure, READ_SIZE},
    response::{self, Asked, Sink},
};
use crate::{
    h2_client::{self, Opened},
    io::ClientIo,
    limits::CLIENT_IDLE_TIMEOUT,
    table::{Endpoint, Upstream},
};

/// Sends the request whose head (and decoded first body bytes) `bufs.head` holds, with the
/// rest of `req_body` from the client, and relays the response.
pub(super) async fn run<C: ClientIo>(
    client: &mut C,
    endpoint: &Endpoint,
    upstream: &Upstream,
    bufs: &mut Buffers,
    req_body: &mut Body,
    asked: Asked<'_>,
    deadline: Pin<&mut Sleep>,
) -> Result<Done, Failure> {
    let https = endpoint.pool().connector().is_tls();
    let (request, head_len) = h2_client::request(&bufs.head, https, endpoint.address())
        .map_err(|reason| Failure::Unavailable(reason.into()))?;
    let first = Bytes::copy_from_slice(&bufs.head[head_len..]);
    let end = req_body.is_done() && first.is_empty();
    let Opened {
        response,
        mut send,
        slot,
    } = h2_client::open(endpoint, upstream, request, end).await?;
    let _slot = slot;
    let Buffers {
        read, out, started, ..
    } = bufs;
    let started = &*started;
    started.store(false, Ordering::Relaxed);
    let (mut client_read, mut client_write) = ClientIo::split(client);
    let receive = async {
        let response = h2_client::response(response, deadline.deadline()).await?;
        let (parts, recv) = response.into_parts();
        // A status the rule retries is caught before anything is relayed.
        if asked.retry_on.contains(&parts.status.as_u16()) {
            return Err(Failure::Status(parts.status.as_u16()));
        }
        out.clear();
        let relayed = response::rewrite_parts(
            parts.status.as_u16(),
            &parts.headers,
            asked,
            Sink::Bytes(out),
        );
        started.store(true, Ordering::Relaxed);
        relay(
            recv,
            &mut client_write,
            out,
            relayed.framing,
            upstream.timeout(),
        )
        .await
        .map_err(Failure::Cut)?;
        Ok::<_, Failure>(Done {
            status: parts.status.as_u16(),
            keep_alive: relayed.keep_alive,
            reusable: false,
            upgraded: false,
        })
    };
    if end {
        return receive.await;
    }
    let send_body = send_body(&mut send, first, req_body, &mut client_read, read);
    exchange::duplex(send_body, receive, started).await
}

/// The client's body, decoded, onto the upstream stream.
async fn send_body<R: AsyncRead + Unpin>(
    send: &mut SendStream<Bytes>,
    first: Bytes,
    req_body: &mut Body,
    client: &mut R,
    read: &mut Vec<u8>,
) -> Result<(), BodyError> {
    let upstream = |e: h2::Error| BodyError::Write(std::io::Error::other(e));
    h2_client::send_data(send, first, req_body.is_done())
        .await
        .map_err(upstream)?;
    let mut decoded = Vec::with_capacity(READ_SIZE);
    while !req_body.is_done() {
        if read.is_empty() {
            read.reserve(READ_SIZE);
            let n = tokio::time::timeout(CLIENT_IDLE_TIMEOUT, client.read_buf(read))
                .await
                .map_err(|_| BodyError::ReadTimeout(CLIENT_IDLE_TIMEOUT))?
                .map_err(BodyError::Read)?;
            if n == 0 {
                send.send_reset(h2::Reason::CANCEL);
                return Err(BodyError::Truncated);
            }
        }
        decoded.clear();
        let used = req_body.take(read, &mut decoded)?;
        read.drain(..used);
        let end = req_body.is_done();
        if !decoded.is_empty() || end {
            h2_client::send_data(send, Bytes::copy_from_slice(&decoded), end)
                .await
                .map_err(upstream)?;
        }
    }
    Ok(())
}

/// The response head in `out`, then the body in the client's framing.
async fn relay<W: AsyncWrite + Unpin>(
    mut recv: RecvStream,
    client: &mut W,
    out: &mut Vec<u8>,
    framing: Framing,
    idle: Duration,
) -> Result<(), BodyError> {
    if framing == Framing::Empty {
        return body::write_all(client, out, CLIENT_IDLE_TIMEOUT).await;
    }
    let chunked = framing == Framing::Chunked;
    loop {
        // A stalled upstream fails the body after its timeout, as over HTTP/1.1.
        let data = tokio::time::timeout(idle, poll_fn(|cx| recv.poll_data(cx)))
            .await
            .map_err(|_| BodyError::ReadTimeout(idle))?;
        let Some(data) = data else { break };
        let data = data.map_err(|e| BodyError::Read(std::io::Error::other(e)))?;
        let _ = recv.flow_control().release_capacity(data.len());
        if data.is_empty() {
            continue;
        }
        if chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        out.extend_from_slice(&data);
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        body::write_all(client, out, CLIENT_IDLE_TIMEOUT).await?;
        out.clear();
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    body::write_all(client, out, CLIENT_IDLE_TIMEOUT).await?;
    out.clear();
    Ok(())
}
