//! A transcoded request from an HTTP/1 client: its whole body read (decoded from its framing,
//! up to the largest gRPC message), the call made ([`crate::h2_client::transcoded`]), and the
//! JSON answer written like any of the gateway's own.

use tokio::{io::AsyncReadExt, time::Instant};

use super::{
    body::{Body, BodyError},
    exchange::{Buffers, Failure, READ_SIZE},
    request::Routed,
    respond,
};
use crate::{
    h2_client::{self, Refused},
    io::ClientIo,
    limits::CLIENT_IDLE_TIMEOUT,
    pipeline::{Connection, Local, Outcome, ProxyError, request_id::RequestId},
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
    arrived: Instant,
) -> bool {
    let endpoint = &routed.upstream.endpoints()[routed.endpoint];
    outcome.rule = Some(routed.rule.clone());
    outcome.upstream = Some((routed.upstream.clone(), routed.endpoint));
    let https = endpoint.pool().connector().is_tls();
    let parsed = h2_client::request(&bufs.head, https, endpoint.address());
    let answer = match parsed {
        Err(reason) => Local::Error(ProxyError::Malformed { reason }),
        Ok((request, head_len)) => match read_body(client, bufs, req_body, head_len).await {
            Err(error) => {
                // The body is not all read: the connection cannot carry on.
                let _ = respond(
                    client,
                    conn,
                    bufs,
                    Local::Error(error),
                    request_id,
                    true,
                    outcome,
                )
                .await;
                return false;
            }
            Ok(()) => {
                let deadline = routed.rule.timeouts().deadline(arrived, Instant::now());
                let body = &bufs.head[head_len..];
                match h2_client::transcoded(
                    transcoder,
                    endpoint,
                    &routed.upstream,
                    request,
                    body,
                    deadline,
                )
                .await
                {
                    Ok(answer) | Err(Refused::Client(answer)) => answer,
                    Err(Refused::Exchange(error)) => {
                        match Failure::from(error).into_error(&routed.upstream, endpoint) {
                            Ok(error) => Local::Error(error),
                            Err(_) => Local::Error(ProxyError::Malformed {
                                reason: "the request body was cut short",
                            }),
                        }
                    }
                }
            }
        },
    };
    respond(client, conn, bufs, answer, request_id, !keep_alive, outcome).await && keep_alive
}

/// Reads the rest of the body, decoded, after the head in `bufs.head`.
async fn read_body<C: ClientIo>(
    client: &mut C,
    bufs: &mut Buffers,
    req_body: &mut Body,
    head_len: usize,
) -> Result<(), ProxyError> {
    let refused = |error: BodyError| match error {
        BodyError::TooLarge => ProxyError::BodyTooLarge,
        other => ProxyError::Malformed {
            reason: super::exchange::chunked_reason(&other),
        },
    };
    while !req_body.is_done() {
        if bufs.head.len() - head_len > MAX_MESSAGE {
            return Err(ProxyError::BodyTooLarge);
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
        let used = req_body.take(&bufs.read, &mut bufs.head).map_err(refused)?;
        bufs.read.drain(..used);
    }
    if bufs.head.len() - head_len > MAX_MESSAGE {
        return Err(ProxyError::BodyTooLarge);
    }
    Ok(())
}
