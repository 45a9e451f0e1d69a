//! The admin endpoint: `/live`, `/ready`, `/config` and `/metrics` over plain HTTP/1.1.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};

use crate::{limits::HEADER_READ_TIMEOUT, metrics::source_name, state::State};

/// Serves the admin endpoint until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, &req)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" => match state.table() {
            Some(_) => text(StatusCode::OK, "ready\n"),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no configuration loaded\n"),
        },
        "/config" => {
            let body = match state.table() {
                Some(t) => serde_json::json!({
                    "version": t.version(),
                    "source": source_name(t.source()),
                    "routes": t.routes(),
                    "upstreams": t.upstreams().count(),
                    "loaded_at": rfc3339(t.loaded_at()),
                    "cached_version": state.cached_version(),
                    "health": health(&t),
                    "services": state.side().services().addresses(),
                    "dns": dns(state),
                }),
                None => serde_json::json!({
                    "version": 0,
                    "source": null,
                    "routes": 0,
                    "upstreams": 0,
                    "loaded_at": null,
                    "cached_version": state.cached_version(),
                    "services": state.side().services().addresses(),
                    "dns": dns(state),
                }),
            };
            with_type(StatusCode::OK, body.to_string(), "application/json")
        }
        "/metrics" => with_type(
            StatusCode::OK,
            {
                let mut text = state.metrics().render(state.table().as_deref());
                crate::metrics::render_cluster(&state.side().shared_limits().link, &mut text);
                crate::metrics::render_dns(state.side().dns(), &mut text);
                text
            },
            "text/plain; version=0.0.4",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The endpoints of upstreams that track health (checks, outlier detection, a breaker or a
/// balancer that counts): each one's state, and a summary per upstream.
fn health(table: &crate::table::Table) -> serde_json::Value {
    let now = crate::health::now_ms();
    let mut upstreams: Vec<_> = table
        .upstreams()
        .filter(|u| u.tracks_health())
        .map(|upstream| {
            let endpoints: Vec<_> = upstream
                .endpoints()
                .iter()
                .map(|e| {
                    let state = e.state();
                    serde_json::json!({
                        "address": e.address(),
                        "up": state.is_up(),
                        "ejected": state.is_ejected(now),
                        "usable": state.usable(now),
                        "in_flight": state.in_flight.load(std::sync::atomic::Ordering::Relaxed),
                    })
                })
                .collect();
            let usable = endpoints.iter().filter(|e| e["usable"] == true).count();
            serde_json::json!({
                "name": &**upstream.name(),
                "endpoints": endpoints.len(),
                "usable": usable,
                "state": endpoints,
            })
        })
        .collect();
    upstreams.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::Value::Array(upstreams)
}

/// Each re-resolved `host:port`: its last good answer, whether the table served uses it yet
/// (`served`: false while a recompile for it is under way), when it was last resolved, and
/// since when (and why) lookups fail, if they do.
fn dns(state: &State) -> serde_json::Value {
    let table = state.table();
    let mut stale = std::collections::BTreeSet::new();
    for upstream in table.iter().flat_map(|t| t.upstreams()) {
        for (name, current) in upstream.names() {
            if !current {
                stale.insert(name.address().to_owned());
            }
        }
    }
    let names: serde_json::Map<String, serde_json::Value> = state
        .side()
        .dns()
        .report()
        .into_iter()
        .map(|(name, report)| {
            let addresses: Vec<String> = report.addresses.iter().map(ToString::to_string).collect();
            let entry = serde_json::json!({
                "addresses": addresses,
                "served": !stale.contains(&name),
                "resolved_at": report.resolved_at.map(rfc3339),
                "failing_since": report.failing_since.map(rfc3339),
                "error": report.error,
            });
            (name, entry)
        })
        .collect();
    serde_json::Value::Object(names)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(status, body.to_owned(), "text/plain")
}

fn with_type(
    status: StatusCode,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `2026-01-02T03:04:05.678Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = gateway_proto::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
    }
}
