//! Header rewriting for a hop: hop-by-hop headers out, `X-Forwarded-*` and the request id in.

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, header::CONNECTION};

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The headers that never cross a hop (RFC 9110 7.6.1), besides those `Connection` names.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];
static HTTP: HeaderValue = HeaderValue::from_static("http");

/// Removes the hop-by-hop headers: those named in `Connection`, and the fixed list.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        // Names listed in Connection are hop-by-hop too (RFC 9110 7.6.1).
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

/// Sets the forwarding headers of a request about to go upstream. From an untrusted peer the
/// incoming `X-Forwarded-*` values are replaced; from a trusted one they are kept (and the
/// peer appended to `X-Forwarded-For`).
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    peer_ip: &HeaderValue,
    trusted: bool,
    host: Option<HeaderValue>,
    request_id: &HeaderValue,
) {
    let chain = if trusted {
        append_for(headers, peer_ip)
    } else {
        None
    };
    headers.insert(
        X_FORWARDED_FOR.clone(),
        chain.unwrap_or_else(|| peer_ip.clone()),
    );
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HTTP.clone());
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST.clone(), host);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// The incoming `X-Forwarded-For` chain with the peer appended, if there is a chain.
fn append_for(headers: &HeaderMap, peer_ip: &HeaderValue) -> Option<HeaderValue> {
    let mut values = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    values.peek()?;
    let mut chain = BytesMut::with_capacity(64);
    for value in values {
        if !chain.is_empty() {
            chain.put_slice(b", ");
        }
        chain.put_slice(value.as_bytes());
    }
    chain.put_slice(b", ");
    chain.put_slice(peer_ip.as_bytes());
    HeaderValue::from_maybe_shared(chain.freeze()).ok()
}

#[cfg(test)]
mod tests {
    use http::header::{PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE};

    use super::*;

    #[test]
    fn strips_hop_by_hop_and_listed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(PROXY_AUTHORIZATION, HeaderValue::from_static("Basic x"));
        h.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_from_untrusted_and_trusted() {
        let peer = HeaderValue::from_static("10.0.0.9");
        let id = HeaderValue::from_static("abc");
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        set_forwarded(
            &mut h,
            &peer,
            false,
            Some(HeaderValue::from_static("a.com")),
            &id,
        );
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "a.com");
        assert_eq!(h[&X_REQUEST_ID], "abc");

        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("5.6.7.8"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        set_forwarded(&mut h, &peer, true, None, &id);
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 5.6.7.8, 10.0.0.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert!(!h.contains_key(&X_FORWARDED_HOST));
    }
}
