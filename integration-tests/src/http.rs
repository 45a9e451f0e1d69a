//! A small HTTP/1.1 client for requests through a data plane or to admin endpoints.
//!
//! Every call of [`request`] opens a new connection, so that a restarted server is never
//! reached through a stale pooled one; [`KeepAlive`] keeps its connections, as steady load does.

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::eventually::patience;

/// A whole response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

// === impl HttpResponse ===

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            anyhow::anyhow!(
                "body is not JSON ({e}): status {}: {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `GET url` with extra headers (a `host` header overrides the URL's).
pub async fn get(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<HttpResponse> {
    request(Method::GET, url, headers, Bytes::new()).await
}

/// Any request; fails on connection errors and after [`patience`] without a response.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<HttpResponse> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let mut builder = Request::builder().method(method.clone()).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(&client, builder.body(Full::new(body))?, &method, url).await
}

/// A client that keeps its connections open between requests.
#[derive(Clone, Debug)]
pub struct KeepAlive {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for KeepAlive {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl KeepAlive {
    /// `GET url`, on a kept connection when there is one.
    pub async fn get(&self, url: &str) -> anyhow::Result<HttpResponse> {
        let request = Request::get(url).body(Full::new(Bytes::new()))?;
        send(&self.client, request, &Method::GET, url).await
    }
}

/// One exchange, whole, within [`patience`].
async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
    method: &Method,
    url: &str,
) -> anyhow::Result<HttpResponse> {
    let exchange = async {
        let response = client.request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(patience(), exchange).await {
        Ok(result) => result.map_err(|e| anyhow::anyhow!("{method} {url}: {e:#}")),
        Err(_) => anyhow::bail!("{method} {url}: no response within {:?}", patience()),
    }
}
