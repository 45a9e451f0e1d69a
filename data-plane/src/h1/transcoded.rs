//! A transcoded request from an HTTP/1 client: its whole body read (decoded from its framing,
//! up to the largest gRPC message), the call made ([`crate::h2_client::transcoded`]), and the
//! JSON answer written like any of the gateway's own.

mod streamed;

use tokio::{
    io::{AsyncReadExt, AsyncWrite},
    time::Instant,
};

use self::streamed::{Streamed, streamed};
use super::{
    body::{Body, BodyError, write_all},
    exchange::{Buffers, Failure, READ_SIZE},
    request::Routed,
    respond, respond_with,
};
use crate::{
    h2_client::{self, JsonStream, Refused, Transcoded, transcoded},
    io::ClientIo,
    limits::CLIENT_IDLE_TIMEOUT,
    pipeline::{Connection, Local, Outcome, ProxyError, request_id::RequestId},
    table::{Endpoint, Upstream},
    transcode::{Transcoder, grpc::MAX_MESSAGE},
};

/// Answers the request whose upstream head is in `bufs.head` (with the first body bytes after
/// it); returns whether the connection can carry another request.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run<C: ClientIo>(
    client: &mut C,
    conn: &Connection,
    bufs: &mut Buffers,
    req_body: &mut Body,
    transcoder: &Transcoder,
    routed: Routed,
    request_id: &RequestId,
    mut outcome: Outcome,
    keep_alive: bool,
    http10: bool,
    arrived: Instant,
) -> bool {
    let endpoint = &routed.upstream.endpoints()[routed.endpoint];
    outcome.rule = Some(routed.rule.clone());
    outcome.upstream = Some((routed.upstream.clone(), routed.endpoint));
    let Some(head_len) = h2_client::head_len(&bufs.head) else {
        let answer = Local::TranscodedError(ProxyError::Malformed {
            reason: "the upstream request head is incomplete",
        });
        return respond(client, conn, bufs, answer, request_id, true, outcome).await;
    };
    let to = (endpoint, &*routed.upstream);
    let prepared = transcoded::prepare(transcoder, endpoint, &bufs.head[..head_len]);
    let prepared = match prepared {
        Ok(prepared) if prepared.streams_request() && !req_body.is_done() => {
            let call = Streamed {
                routed: &routed,
                request_id,
                keep_alive: keep_alive && !http10,
                http10,
                arrived,
                head_len,
            };
            return streamed(client, conn, bufs, req_body, prepared, call, outcome).await;
        }
        prepared => prepared,
    };
    // Read whole even when the request is refused already, so that the connection can carry on.
    if let Err(error) = read_whole(client, bufs, req_body, head_len, MAX_MESSAGE).await {
        // The body is not all read: the connection cannot carry on.
        let answer = Local::TranscodedError(error);
        let _ = respond(client, conn, bufs, answer, request_id, true, outcome).await;
        return false;
    }
    let deadline = routed.rule.timeouts().deadline(arrived, Instant::now());
    let body = &bufs.head[head_len..];
    let called = match prepared {
        Ok(prepared) => transcoded::call(prepared, to, body, deadline, &mut outcome.grpc).await,
        Err(refused) => Err(refused),
    };
    let answer = match called {
        Ok(Transcoded::Whole(answer)) | Err(Refused::Client(answer)) => answer,
        Ok(Transcoded::Stream(stream)) => {
            outcome.status = 200;
            outcome.finish(&conn.state);
            return relay(
                client,
                &mut bufs.out,
                (stream, &routed.response_extra),
                request_id,
                keep_alive && !http10,
                http10,
            )
            .await;
        }
        Err(Refused::Exchange(error)) => exchange_error(error, to),
    };
    // The policies' response headers (CORS, RateLimit) go on its answers too.
    let close = !keep_alive;
    respond_with(
        client,
        conn,
        bufs,
        answer,
        (request_id, close),
        outcome,
        &routed.response_extra,
    )
    .await
        && keep_alive
}

/// The answer to a call that failed.
fn exchange_error(error: h2_client::Error, (endpoint, upstream): (&Endpoint, &Upstream)) -> Local {
    match Failure::from(error).into_error(upstream, endpoint) {
        Ok(error) => Local::TranscodedError(error),
        Err(_) => Local::TranscodedError(ProxyError::Malformed {
            reason: "the request body was cut short",
        }),
    }
}

/// A stream of JSON replies, in chunks (to an HTTP/1.0 client: as they are, until the
/// connection closes); whether the connection can carry another request afterwards.
async fn relay<W: AsyncWrite + Unpin>(
    client: &mut W,
    out: &mut Vec<u8>,
    (mut stream, extra): (JsonStream, &[(http::HeaderName, http::HeaderValue)]),
    request_id: &RequestId,
    keep_alive: bool,
    http10: bool,
) -> bool {
    use http_body_util::BodyExt as _;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: ");
    out.extend_from_slice(stream.content_type().as_bytes());
    out.extend_from_slice(b"\r\ncache-control: no-cache\r\n");
    if !http10 {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    for (name, value) in stream.headers().iter().chain(extra) {
        super::head::write_header(out, name.as_str(), value.as_bytes());
    }
    super::head::write_header(out, "x-request-id", request_id.as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // Each reply goes out as it arrives: the head waits for the first.
    while let Some(frame) = stream.frame().await {
        let Ok(frame) = frame else { return false };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if http10 {
            out.extend_from_slice(&data);
        } else {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
        }
        if write_all(client, out, CLIENT_IDLE_TIMEOUT).await.is_err() {
            return false;
        }
        out.clear();
    }
    if http10 {
        return false;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    write_all(client, out, CLIENT_IDLE_TIMEOUT).await.is_ok() && keep_alive
}

/// Reads the rest of the body after the head in `bufs.head` (its first `head_len` bytes),
/// as [`read_whole`] does, unless it passes `max` bytes: then what was read stays in
/// `bufs.head`, to be sent first, and the rest streams as usual.
pub(super) async fn read_up_to<C: ClientIo>(
    client: &mut C,
    bufs: &mut Buffers,
    req_body: &mut Body,
    head_len: usize,
    max: usize,
) -> Result<(), ProxyError> {
    read_body(client, bufs, req_body, head_len, (max, false)).await
}

/// Reads the rest of the body after the head in `bufs.head` (its first `head_len` bytes):
/// decoded or as framed, as `req_body` takes it; more than `max` bytes of it is 413.
pub(super) async fn read_whole<C: ClientIo>(
    client: &mut C,
    bufs: &mut Buffers,
    req_body: &mut Body,
    head_len: usize,
    max: usize,
) -> Result<(), ProxyError> {
    read_body(client, bufs, req_body, head_len, (max, true)).await
}

/// Reads the body into `bufs.head` until it ends or passes `max` bytes, which is 413 if
/// `refuse` says so.
async fn read_body<C: ClientIo>(
    client: &mut C,
    bufs: &mut Buffers,
    req_body: &mut Body,
    head_len: usize,
    (max, refuse): (usize, bool),
) -> Result<(), ProxyError> {
    let refused = |error: BodyError| match error {
        BodyError::TooLarge => ProxyError::BodyTooLarge,
        other => ProxyError::Malformed {
            reason: super::exchange::chunked_reason(&other),
        },
    };
    while !req_body.is_done() {
        if bufs.head.len() - head_len > max {
            return if refuse {
                Err(ProxyError::BodyTooLarge)
            } else {
                Ok(())
            };
        }
        if bufs.read.is_empty() {
            bufs.read.reserve(READ_SIZE);
            let read = tokio::time::timeout(CLIENT_IDLE_TIMEOUT, client.read_buf(&mut bufs.read))
                .await
                .map_err(|_| ProxyError::RequestTimeout(CLIENT_IDLE_TIMEOUT))?
                .map_err(|_| ProxyError::Malformed {
                    reason: "the request body was cut short",
                })?;
            if read == 0 {
                return Err(ProxyError::Malformed {
                    reason: "the request body was cut short",
                });
            }
        }
        req_body
            .take_into(&mut bufs.read, &mut bufs.head)
            .map_err(refused)?;
    }
    if refuse && bufs.head.len() - head_len > max {
        return Err(ProxyError::BodyTooLarge);
    }
    Ok(())
}
