//! A client stream from an HTTP/1 client, sent as it comes: the call opened at once, the body's
//! NDJSON lines sent as they arrive while the replies (a bidirectional call's) are written back
//! as they come, both ways at once on the split connection.

use tokio::{io::AsyncReadExt as _, time::Instant};

use super::{exchange_error, relay};
use crate::{
    h1::{
        body::{Body, BodyError},
        exchange::{Buffers, READ_SIZE},
        request::Routed,
        respond, respond_with,
    },
    h2_client::{Refused, StreamError, Transcoded, transcoded},
    io::ClientIo,
    limits::CLIENT_IDLE_TIMEOUT,
    pipeline::{Connection, Local, Outcome, request_id::RequestId},
};

/// What a streamed call needs of its request besides the connection.
pub(super) struct Streamed<'a> {
    pub(super) routed: &'a Routed,
    pub(super) request_id: &'a RequestId,
    /// The client may send another request afterwards.
    pub(super) keep_alive: bool,
    pub(super) http10: bool,
    pub(super) arrived: Instant,
    /// The length of the upstream head in `bufs.head`.
    pub(super) head_len: usize,
}

/// How the exchange ended.
enum Ended {
    /// The replies were relayed; whether the connection can carry on.
    Relayed(bool),
    /// An answer to write, and whether the whole request body was read.
    Answer(Local, bool),
}

/// Runs the call of `prepared`, whose head `bufs.head` holds with the first decoded body bytes
/// after it; returns whether the connection can carry another request.
pub(super) async fn streamed<C: ClientIo>(
    client: &mut C,
    conn: &Connection,
    bufs: &mut Buffers,
    req_body: &mut Body,
    prepared: transcoded::Prepared<'_>,
    call: Streamed<'_>,
    mut outcome: Outcome,
) -> bool {
    let Streamed {
        routed,
        request_id,
        keep_alive,
        http10,
        arrived,
        head_len,
    } = call;
    let endpoint = &routed.upstream.endpoints()[routed.endpoint];
    let to = (endpoint, &*routed.upstream);
    let deadline = routed.rule.timeouts().deadline(arrived, Instant::now());
    let (mut requests, pending) = match transcoded::call_streaming(prepared, to, deadline).await {
        Ok(call) => call,
        Err(refused) => {
            let answer = match refused {
                Refused::Client(answer) => answer,
                Refused::Exchange(error) => exchange_error(error, to),
            };
            // The body is not read: the connection cannot carry on.
            let _ = respond(client, conn, bufs, answer, request_id, true, outcome).await;
            return false;
        }
    };
    let Buffers {
        read, head, out, ..
    } = bufs;
    let (mut client_read, mut client_write) = ClientIo::split(client);
    let mut grpc = None;
    let ended = {
        let send = async {
            let mut chunk = head.split_off(head_len);
            let sent = async {
                requests.push(&chunk).await?;
                while !req_body.is_done() {
                    if read.is_empty() {
                        read.reserve(READ_SIZE);
                        let got =
                            tokio::time::timeout(CLIENT_IDLE_TIMEOUT, client_read.read_buf(read))
                                .await;
                        if !matches!(got, Ok(Ok(1..))) {
                            return Err(StreamError::Body("the request body was cut short"));
                        }
                    }
                    chunk.clear();
                    req_body.take_into(read, &mut chunk).map_err(body_error)?;
                    requests.push(&chunk).await?;
                }
                requests.finish().await
            }
            .await;
            if sent.is_err() {
                requests.abandon();
            }
            sent
        };
        let receive = pending.answer();
        tokio::pin!(send, receive);
        // Until the answer begins, the body goes up; a line the method cannot take first is
        // the client's 400.
        let mut sent = None;
        let answer = loop {
            tokio::select! {
                result = &mut send, if sent.is_none() => {
                    if let Err(error) = &result
                        && let Some(answer) = transcoded::stream_refused(error)
                    {
                        break Err(answer);
                    }
                    sent = Some(result);
                }
                (call, answer) = &mut receive => {
                    grpc = Some(call);
                    break Ok(answer);
                }
            }
        };
        match answer {
            Err(answer) => Ended::Answer(answer, false),
            Ok(Ok(Transcoded::Stream(stream))) => {
                let relayed = relay(
                    &mut client_write,
                    out,
                    (stream, &routed.response_extra),
                    request_id,
                    keep_alive,
                    http10,
                );
                tokio::pin!(relayed);
                // The replies go down while the rest of the body still goes up.
                loop {
                    tokio::select! {
                        result = &mut send, if sent.is_none() => sent = Some(result),
                        kept = &mut relayed => {
                            let done = matches!(sent, Some(Ok(())));
                            break Ended::Relayed(kept && done);
                        }
                    }
                }
            }
            Ok(Ok(Transcoded::Whole(answer)) | Err(Refused::Client(answer))) => {
                Ended::Answer(answer, matches!(sent, Some(Ok(()))))
            }
            Ok(Err(Refused::Exchange(error))) => {
                Ended::Answer(exchange_error(error, to), matches!(sent, Some(Ok(()))))
            }
        }
    };
    outcome.grpc = grpc;
    match ended {
        Ended::Relayed(kept) => {
            outcome.status = 200;
            outcome.finish(&conn.state);
            kept
        }
        Ended::Answer(answer, read_all) => {
            let keep = keep_alive && read_all;
            let extra = &routed.response_extra;
            respond_with(
                &mut client_write,
                conn,
                bufs,
                answer,
                (request_id, !keep),
                outcome,
                extra,
            )
            .await
                && keep
        }
    }
}

fn body_error(error: BodyError) -> StreamError {
    match error {
        BodyError::TooLarge => StreamError::BodyTooLarge,
        other => StreamError::Body(crate::h1::exchange::chunked_reason(&other)),
    }
}
