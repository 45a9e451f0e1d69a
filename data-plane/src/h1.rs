//! HTTP/1.x from clients, forwarded over pooled HTTP/1.1 connections: our own connection loop
//! (httparse for the heads), not hyper's.
//!
//! One task per client connection drives both sides: it reads a request head, routes it,
//! writes the rewritten head and body upstream on a pooled connection, and relays the response
//! back, with no channel or second task in between. Per request that is four system calls
//! (read, write, read, write) and no wake-up besides the sockets' (docs/benchmarks.md).
//!
//! - [`request`]: the request head, checked, routed and rewritten; [`response`]: the upstream's.
//! - [`body`]: where a body ends, and streaming it; [`pool`]: idle upstream connections.
//! - [`head`]: head lines and our own responses.

mod body;
mod consult;
mod exchange;
mod head;
mod mirror;
mod over_h2;
mod request;
mod response;
mod transcoded;
mod tries;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::watch,
    time::{Instant, Sleep},
};

use self::exchange::Buffers;
pub(crate) use self::{
    body::{Body, BodyError, Chunked, Framing, write_all},
    consult::resume,
    exchange::{Failure, may_retry, read_head},
    head::{decimal, parse_length, write_local},
    mirror::send as mirror,
    request::{BodyFrom, Line, Request, Route, Target, parse as parse_request, prepare},
    response::{
        Asked, FieldSink, Response as ParsedResponse, Sink, parse_into as parse_response,
        rewrite_parts,
    },
    tries::Tries,
};
use crate::{
    io::ClientIo,
    limits::{self, CLIENT_IDLE_TIMEOUT, HEADER_READ_TIMEOUT},
    pipeline::{self, Connection, Local, Outcome, ProxyError, record, request_id::RequestId},
};

/// What a client sends first on a prior-knowledge HTTP/2 connection.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a connection left the HTTP/1 loop.
#[derive(Debug)]
pub(crate) enum Ended<S> {
    Closed,
    /// The client speaks HTTP/2: serve it elsewhere, replaying the bytes read so far.
    Http2 {
        stream: S,
        read: Vec<u8>,
    },
}

/// Serves one client connection until it closes, fails, or `shutdown` turns true (in-flight
/// exchanges finish first).
pub(crate) async fn serve<C: ClientIo>(
    mut client: C,
    conn: Arc<Connection>,
    mut shutdown: watch::Receiver<bool>,
) -> Ended<C> {
    let mut bufs = Buffers::default();
    let mut first = true;
    let draining = shutdown.clone();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    // One long-lived timer per deadline, moved forward for each request: extending a
    // registered timer is an atomic store, where a new one per request costs a wheel insert
    // and removal.
    let header_timer = tokio::time::sleep(HEADER_READ_TIMEOUT);
    let upstream_timer = tokio::time::sleep(HEADER_READ_TIMEOUT);
    tokio::pin!(stop, header_timer, upstream_timer);
    loop {
        let reading = read_request(
            &mut client,
            &conn,
            &mut bufs,
            Watch {
                stop: stop.as_mut(),
                draining: &draining,
                timer: header_timer.as_mut(),
            },
            first,
        );
        let request = match reading.await {
            Next::Request(request) => request,
            Next::Close => return Ended::Closed,
            Next::Refuse(error) => {
                let id = RequestId::new();
                let outcome = Outcome::start(Instant::now());
                respond(
                    &mut client,
                    &conn,
                    &mut bufs,
                    Local::Error(error),
                    &id,
                    true,
                    outcome,
                )
                .await;
                linger(&mut client, &mut bufs.read).await;
                return Ended::Closed;
            }
            Next::Http2 => {
                return Ended::Http2 {
                    stream: client,
                    read: std::mem::take(&mut bufs.read),
                };
            }
        };
        first = false;
        let keep = exchange(
            &mut client,
            &conn,
            &mut bufs,
            request,
            &draining,
            upstream_timer.as_mut(),
        )
        .await;
        if !keep {
            linger(&mut client, &mut bufs.read).await;
            return Ended::Closed;
        }
    }
}

/// How long, and how much, a closing connection reads and discards.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// Closes our side, then reads and drops what the client still sends (the rest of a body we
/// refused) for a while: closing a socket with unread data sends a reset, which can destroy
/// the response before the client has read it.
async fn linger<C: ClientIo>(client: &mut C, buf: &mut Vec<u8>) {
    if client.shutdown().await.is_err() {
        return;
    }
    let discard = async {
        let mut total = 0;
        while total < LINGER_BYTES {
            buf.clear();
            match client.read_buf(buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, discard).await;
}

/// What came in on a connection waiting for a request.
enum Next {
    Request(Request),
    /// The client closed, stayed idle past the timeout, or we are draining.
    Close,
    /// Answer with this error, then close.
    Refuse(ProxyError),
    /// The HTTP/2 preface.
    Http2,
}

/// Reads until a complete request head is buffered.
async fn read_request<C: ClientIo, S: Future<Output = ()>>(
    client: &mut C,
    conn: &Connection,
    bufs: &mut Buffers,
    mut watch: Watch<'_, S>,
    first: bool,
) -> Next {
    watch
        .timer
        .as_mut()
        .reset(limits::deadline(Instant::now(), HEADER_READ_TIMEOUT));
    loop {
        if !bufs.read.is_empty() {
            let preface = &H2_PREFACE[..bufs.read.len().min(H2_PREFACE.len())];
            if first && bufs.read.starts_with(preface) {
                if bufs.read.len() >= H2_PREFACE.len() {
                    return Next::Http2;
                }
            } else {
                match request::parse(&bufs.read, conn, &mut bufs.head, None) {
                    Ok(Some(request)) => {
                        let head_len = request.head_len;
                        let request = match request.route {
                            Route::Consult(_) => {
                                let again = |resumed| {
                                    request::parse(&bufs.read, conn, &mut bufs.head, Some(resumed))?
                                        .ok_or(ProxyError::Malformed {
                                            reason: "invalid request head",
                                        })
                                };
                                match resume(request, again).await {
                                    Ok(request) => request,
                                    Err(error) => return Next::Refuse(error),
                                }
                            }
                            _ => request,
                        };
                        bufs.read.drain(..head_len);
                        return Next::Request(request);
                    }
                    Ok(None) => {}
                    Err(error) => return Next::Refuse(error),
                }
            }
        }
        if bufs.read.len() == bufs.read.capacity() {
            bufs.read
                .reserve(bufs.read.capacity().max(exchange::READ_SIZE));
        }
        // Idle between requests is the only place where a drain closes the connection.
        let idle = bufs.read.is_empty();
        if idle && *watch.draining.borrow() {
            return Next::Close;
        }
        let read = tokio::select! {
            biased;
            read = client.read_buf(&mut bufs.read) => read,
            () = watch.timer.as_mut() => {
                // Idle keep-alive connections close quietly; a half-sent head gets a 408.
                return if idle {
                    Next::Close
                } else {
                    Next::Refuse(ProxyError::RequestTimeout(HEADER_READ_TIMEOUT))
                };
            }
            () = watch.stop.as_mut(), if idle => return Next::Close,
        };
        match read {
            Ok(0) | Err(_) => return Next::Close,
            Ok(_) => {}
        }
    }
}

/// The endpoint of a retry, after a try at `at` failed: the failure counts against that
/// endpoint whatever the retry gets, and the retry goes to another one if the balancer offers
/// one within a few picks (its count in flight replacing the last).
pub(crate) fn next_try(
    upstream: &Arc<crate::table::Upstream>,
    at: usize,
    dispatch: &mut Option<crate::table::balance::Dispatch>,
) -> usize {
    upstream.record(at, true);
    let mut next = at;
    for _ in 0..3 {
        let Ok((picked, counted)) = upstream.choose(None) else {
            break;
        };
        (next, *dispatch) = (picked, counted);
        if next != at {
            break;
        }
    }
    next
}

/// A body's payload: `raw` as read, decoded from its chunked framing unless it already was.
fn payload(raw: &[u8], framing: Framing, decoded: bool) -> std::borrow::Cow<'_, [u8]> {
    if decoded || framing != Framing::Chunked {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    // Read through the same parser already: it cannot fail here.
    let _ = Chunked::default().feed(raw, &mut |data| out.extend_from_slice(data));
    std::borrow::Cow::Owned(out)
}

/// What a connection waiting for a request head watches besides the socket.
struct Watch<'a, S> {
    /// Completes when the data plane starts draining.
    stop: Pin<&'a mut S>,
    draining: &'a watch::Receiver<bool>,
    timer: Pin<&'a mut Sleep>,
}

/// Forwards one request and relays its response; returns whether the connection stays open.
async fn exchange<C: ClientIo>(
    client: &mut C,
    conn: &Connection,
    bufs: &mut Buffers,
    request: Request,
    draining: &watch::Receiver<bool>,
    mut timer: Pin<&mut Sleep>,
) -> bool {
    let Request {
        framing,
        keep_alive,
        http10,
        is_head,
        expect_continue,
        replayable,
        idempotent,
        upgrade,
        request_id,
        route,
        ..
    } = request;
    let now = Instant::now();
    let mut outcome = Outcome::start(now);
    let keep_alive = keep_alive && !*draining.borrow();
    let Some(_admitted) = conn.state.admit() else {
        let keep = keep_alive && framing == Framing::Empty;
        let local = Local::Error(ProxyError::Overloaded);
        return respond(client, conn, bufs, local, &request_id, !keep, outcome).await && keep;
    };
    let mut routed = match route {
        Route::Forward(routed) => routed,
        // Asked before the request was handed over.
        Route::Consult(_) => {
            let local = Local::Error(ProxyError::AuthUnavailable {
                reason: "the auth service was not asked".into(),
            });
            respond(client, conn, bufs, local, &request_id, true, outcome).await;
            return false;
        }
        Route::Respond(local, rule) => {
            // The body was not read: the connection can only carry on if there is none.
            let keep = keep_alive && framing == Framing::Empty;
            let local = local.for_rule(rule.as_deref());
            outcome.rule = rule;
            return respond(client, conn, bufs, local, &request_id, !keep, outcome).await && keep;
        }
    };
    let upstream = &routed.upstream;
    let timeouts = *routed.rule.timeouts();
    let head_deadline = limits::deadline(now, upstream.timeout());
    timer.as_mut().reset(
        timeouts
            .deadline(now, now)
            .map_or(head_deadline, |d| d.min(head_deadline)),
    );

    if expect_continue
        && bufs.read.is_empty()
        && body::write_all(client, head::CONTINUE, CLIENT_IDLE_TIMEOUT)
            .await
            .is_err()
    {
        return false;
    }
    // The body bytes that came with the head go out with the rewritten head (decoded from
    // their HTTP/1 framing for an HTTP/2 upstream).
    let multiplexed = upstream.is_multiplexed() || routed.rule.transcoder().is_some();
    let mut req_body = Body::limited(framing, multiplexed, routed.body_limit);
    let head_len = bufs.head.len();
    if let Err(error) = req_body.take_into(&mut bufs.read, &mut bufs.head) {
        let error = match error {
            body::BodyError::TooLarge => ProxyError::BodyTooLarge,
            other => ProxyError::Malformed {
                reason: exchange::chunked_reason(&other),
            },
        };
        respond(
            client,
            conn,
            bufs,
            Local::Error(error),
            &request_id,
            true,
            outcome,
        )
        .await;
        return false;
    }
    // A body a schema checks is read whole before anything is sent (as framed, for an
    // HTTP/1.1 upstream; decoded, for an HTTP/2 one).
    if routed.rule.policies().checks_body && framing != Framing::Empty {
        let max =
            usize::try_from(routed.rule.policies().checked_body_limit()).unwrap_or(usize::MAX);
        let checked = transcoded::read_whole(client, bufs, &mut req_body, head_len, max)
            .await
            .map_err(Local::Error)
            .and_then(|()| {
                let body = payload(&bufs.head[head_len..], framing, multiplexed);
                pipeline::check_body(&routed.rule, &body)
            });
        if let Err(local) = checked {
            outcome.rule = Some(routed.rule.clone());
            respond(client, conn, bufs, local, &request_id, true, outcome).await;
            return false;
        }
    }
    // On a rule that retries or mirrors, a body small enough to keep is read whole first: each
    // try sends it again, and the shadow gets it too.
    // A body of unknown length is read until it ends or passes the limit.
    let keeps = routed.rule.retry().is_some() || routed.rule.mirror().is_some();
    let max = limits::KEPT_BODY_BYTES;
    if keeps
        && !req_body.is_done()
        && routed.rule.transcoder().is_none()
        && !matches!(framing, Framing::Length(n) if n > max as u64)
        && let Err(error) = transcoded::read_up_to(client, bufs, &mut req_body, head_len, max).await
    {
        outcome.rule = Some(routed.rule.clone());
        let local = Local::Error(error);
        respond(client, conn, bufs, local, &request_id, true, outcome).await;
        return false;
    }
    // The whole request is in `bufs.head`: it can be sent again.
    let kept = req_body.is_done();
    // A copy for the shadow upstream: the head as written, and a body only if it is all here
    // (as framed: a chunked body decoded for an HTTP/2 upstream does not go).
    if let Some(shadow) = routed.rule.mirror()
        && kept
        && !(framing == Framing::Chunked && multiplexed)
    {
        mirror::send(shadow, &bufs.head);
    }
    if let Some(transcoder) = routed.rule.transcoder() {
        let transcoder = transcoder.clone();
        return transcoded::run(
            client,
            conn,
            bufs,
            &mut req_body,
            &transcoder,
            routed,
            &request_id,
            outcome,
            keep_alive,
            http10,
            now,
        )
        .await;
    }
    let asked = Asked {
        is_head,
        http10,
        keep_alive,
        upgrade,
        request_id: &request_id,
        edits: &routed.rule.filters().response,
        extra: &routed.response_extra,
        retry_on: &[],
    };

    // Tries, the first and each retry, each on an endpoint of its own where there is one.
    let retry = routed.rule.retry();
    let resendable = Tries::resendable(retry, kept, idempotent);
    let start = (routed.endpoint, routed.dispatch.take());
    let mut tries = Tries::new(retry, upstream, resendable, start);
    let failure = {
        // Whether this request's response has started (the last request's may have).
        bufs.started
            .store(false, std::sync::atomic::Ordering::Relaxed);
        'tries: loop {
            let endpoint = &upstream.endpoints()[tries.at];
            let permit = tries.permit(upstream);
            let asked = Asked {
                retry_on: Tries::retry_on(retry, &permit),
                ..asked
            };
            let failure = if multiplexed {
                let deadline = timeouts.deadline(now, Instant::now());
                let run = over_h2::run(
                    client,
                    endpoint,
                    upstream,
                    bufs,
                    &mut req_body,
                    asked,
                    timer.as_mut(),
                );
                match within(deadline, run)
                    .await
                    .unwrap_or_else(|| Err(cut_off(&timeouts, &bufs.started)))
                {
                    Ok(done) => {
                        if let Some(permit) = permit {
                            permit.refund();
                        }
                        outcome.status = done.status;
                        outcome.rule = Some(routed.rule);
                        outcome.upstream = Some((routed.upstream, tries.at));
                        outcome.finish(&conn.state);
                        drop(tries);
                        return done.keep_alive && req_body.is_done();
                    }
                    Err(failure) => failure,
                }
            } else {
                loop {
                    let mut up = match endpoint.pool().checkout(upstream.idle_timeout()) {
                        Some(up) => up,
                        None => {
                            let Some(_pending) = upstream.pending() else {
                                break Failure::Overloaded;
                            };
                            match endpoint.pool().connect(upstream.connect_timeout()).await {
                                Ok(up) => up,
                                Err(error) => break Failure::Connect(error),
                            }
                        }
                    };
                    let try_start = Instant::now();
                    let deadline = timeouts.deadline(now, try_start);
                    if let Some(deadline) = deadline {
                        // A retry's head waits no longer than the rule allows either.
                        timer
                            .as_mut()
                            .reset(deadline.min(limits::deadline(try_start, upstream.timeout())));
                    }
                    let run = exchange::run(
                        client,
                        &mut up,
                        bufs,
                        &mut req_body,
                        asked,
                        timer.as_mut(),
                        upstream.timeout(),
                    );
                    match within(deadline, run)
                        .await
                        .unwrap_or_else(|| Err(cut_off(&timeouts, &bufs.started)))
                    {
                        Ok(done) => {
                            if let Some(permit) = permit {
                                permit.refund();
                            }
                            if done.reusable && req_body.is_done() {
                                endpoint.pool().checkin(up);
                            } else if done.upgraded {
                                outcome.status = done.status;
                                outcome.rule = Some(routed.rule);
                                outcome.upstream = Some((routed.upstream, tries.at));
                                outcome.finish(&conn.state);
                                // The upstream connection is the client's now: never pooled again.
                                exchange::tunnel(
                                    client,
                                    &mut up,
                                    &mut bufs.read,
                                    CLIENT_IDLE_TIMEOUT,
                                )
                                .await;
                                return false;
                            }
                            outcome.status = done.status;
                            outcome.rule = Some(routed.rule);
                            outcome.upstream = Some((routed.upstream, tries.at));
                            outcome.finish(&conn.state);
                            drop(tries);
                            return done.keep_alive && req_body.is_done();
                        }
                        Err(failure)
                            if exchange::may_retry(&failure, &up, replayable, &mut outcome) => {}
                        Err(failure) => break failure,
                    }
                }
            };
            let started = bufs.started.load(std::sync::atomic::Ordering::Relaxed);
            if !tries
                .again(retry, &failure, permit, started, (upstream, &mut outcome))
                .await
            {
                break 'tries failure;
            }
        }
    };
    let at = tries.at;
    let endpoint = &upstream.endpoints()[at];
    let error = failure.into_error(upstream, endpoint);
    outcome.rule = Some(routed.rule);
    outcome.upstream = Some((routed.upstream, at));
    let error = match error {
        Ok(error) => error,
        Err(cut) => {
            tracing::debug!(request_id = %request_id, error = %crate::pipeline::Chain(&cut), "exchange cut short");
            outcome.finish(&conn.state);
            return false;
        }
    };
    let keep = keep_alive
        && req_body.is_done()
        && !matches!(
            error,
            ProxyError::Malformed { .. } | ProxyError::BodyTooLarge
        );
    respond(
        client,
        conn,
        bufs,
        Local::Error(error),
        &request_id,
        !keep,
        outcome,
    )
    .await
        && keep
}

/// Runs an exchange to the rule's deadline, if it has one; `None` when the deadline cut it off.
async fn within<T>(
    deadline: Option<Instant>,
    run: impl Future<Output = Result<T, Failure>>,
) -> Option<Result<T, Failure>> {
    match deadline {
        None => Some(run.await),
        Some(deadline) => tokio::time::timeout_at(deadline, run).await.ok(),
    }
}

/// An exchange the rule's deadline cut off: [`Failure::Deadline`] if nothing had reached the
/// client yet (a 504 can still be sent), cut short otherwise.
fn cut_off(timeouts: &crate::table::Timeouts, started: &std::sync::atomic::AtomicBool) -> Failure {
    let timeout = timeouts
        .backend_request
        .or(timeouts.request)
        .unwrap_or_default();
    if started.load(std::sync::atomic::Ordering::Relaxed) {
        Failure::Cut(BodyError::ReadTimeout(timeout))
    } else {
        Failure::Deadline(timeout)
    }
}

/// Logs and sends the gateway's own answer, and closes the outcome record; returns whether
/// the answer was written.
async fn respond<W: tokio::io::AsyncWrite + Unpin>(
    client: &mut W,
    conn: &Connection,
    bufs: &mut Buffers,
    local: Local,
    request_id: &RequestId,
    close: bool,
    outcome: Outcome,
) -> bool {
    respond_with(client, conn, bufs, local, (request_id, close), outcome, &[]).await
}

/// [`respond`], with `extra` headers besides the answer's own.
async fn respond_with<W: tokio::io::AsyncWrite + Unpin>(
    client: &mut W,
    conn: &Connection,
    bufs: &mut Buffers,
    local: Local,
    (request_id, close): (&RequestId, bool),
    mut outcome: Outcome,
    extra: &[(http::HeaderName, http::HeaderValue)],
) -> bool {
    if let Some(error) = local.error() {
        record(&conn.state, error, request_id);
    }
    outcome.status = local.status().as_u16();
    outcome.error = local.code();
    bufs.out.clear();
    let mut response = local.into_response(request_id.as_bytes());
    response.headers.extend_from_slice(extra);
    head::write_local(&mut bufs.out, response, request_id, close);
    outcome.finish(&conn.state);
    body::write_all(client, &bufs.out, CLIENT_IDLE_TIMEOUT)
        .await
        .is_ok()
}

#[cfg(test)]
mod tests;
