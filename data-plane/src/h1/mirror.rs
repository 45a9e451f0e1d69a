//! RequestMirror: a copy of a request, as written for its upstream, sent to a shadow upstream
//! on a task of its own. Its answer is read to the end of the head and dropped; nothing of it
//! reaches the client, and the real request never waits for it. Copies in flight are capped,
//! so a shadow that hangs costs memory and tasks no more than that.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::table::{Endpoint, Upstream};

/// The largest request copied (head and body).
pub(crate) const MAX_MIRRORED: usize = 64 * 1024 + crate::limits::MAX_HEADER_BYTES;
/// Copies in flight at once on a data plane; past it, requests go unmirrored.
const MAX_IN_FLIGHT: usize = 1024;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Sends `request` (a whole HTTP/1.1 request) to the shadow `upstream`, fire and forget: as
/// it is to an HTTP/1.1 shadow, as an HTTP/2 request to an H2C or H2 one (a body under a
/// Content-Length only: a chunked one would have to be decoded for it, and goes unmirrored).
pub(crate) fn send(upstream: &Arc<Upstream>, request: &[u8]) {
    if request.len() > MAX_MIRRORED {
        return;
    }
    if IN_FLIGHT.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let (upstream, request) = (upstream.clone(), request.to_vec());
    tokio::spawn(async move {
        let copy = async {
            let endpoint = &upstream.endpoints()[upstream.pick()?];
            if upstream.is_multiplexed() {
                return over_h2(&upstream, endpoint, &request).await;
            }
            let mut stream = endpoint
                .pool()
                .connector()
                .connect(endpoint.address(), upstream.connect_timeout())
                .await
                .ok()?;
            stream.write_all(&request).await.ok()?;
            let mut head = Vec::with_capacity(1024);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                head.reserve(1024);
                if stream.read_buf(&mut head).await.ok()? == 0 {
                    break;
                }
            }
            Some(())
        };
        let _ = tokio::time::timeout(upstream.timeout(), copy).await;
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    });
}

/// The copy to an HTTP/2 shadow: its head as an HTTP/2 request, its body (if any) as one
/// piece, the answer's head awaited and the stream dropped.
async fn over_h2(upstream: &Upstream, endpoint: &Endpoint, request: &[u8]) -> Option<()> {
    let https = endpoint.pool().connector().is_tls();
    let (head, head_len) = crate::h2_client::request(request, https, endpoint.address()).ok()?;
    let body = &request[head_len..];
    if !body.is_empty() && head.headers().contains_key(http::header::TRANSFER_ENCODING) {
        return None;
    }
    let opened = crate::h2_client::open(endpoint, upstream, head, body.is_empty())
        .await
        .ok()?;
    let mut send = opened.send;
    if !body.is_empty() {
        crate::h2_client::send_data(&mut send, bytes::Bytes::copy_from_slice(body), true)
            .await
            .ok()?;
    }
    let _answer = opened.response.await.ok()?;
    Some(())
}
