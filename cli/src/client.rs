//! The admin API client: one channel, the bearer token on every request, and gRPC statuses
//! turned into [`ApiError`]s.

use std::fs;

use anyhow::Context as _;
use gateway_proto::{ResourceKind, v1, v1::admin_client::AdminClient};
use tonic::{
    Request, Status,
    codec::CompressionEncoding,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::{
    args::GlobalArgs,
    error::{ApiError, usage},
};

/// Largest response accepted: a list of many resources.
const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Adds `authorization: Bearer <token>` to every request when a token is configured.
#[derive(Clone, Debug)]
pub(crate) struct Auth(Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connected admin API client.
#[derive(Debug)]
pub(crate) struct Client {
    inner: AdminClient<InterceptedService<Channel, Auth>>,
}

// === impl Client ===

impl Client {
    /// Connects to `--server`. A bad URL or token is a usage error, an unreachable server a
    /// rejected request.
    pub(crate) async fn connect(global: &GlobalArgs) -> anyhow::Result<Self> {
        Self::connect_with(global, Some(global.timeout)).await
    }

    /// Like [`Client::connect`], with no limit on a call's length (only on connecting): for
    /// a stream that lasts as long as the command, `register`.
    pub(crate) async fn connect_for_streams(global: &GlobalArgs) -> anyhow::Result<Self> {
        Self::connect_with(global, None).await
    }

    async fn connect_with(
        global: &GlobalArgs,
        call_timeout: Option<std::time::Duration>,
    ) -> anyhow::Result<Self> {
        let auth = Auth(bearer(global)?);
        let url = server_url(&global.server);
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| usage(format!("invalid --server URL {url:?}: {e}")))?
            .connect_timeout(global.timeout)
            // A control plane that vanishes without closing the connection is noticed.
            .http2_keep_alive_interval(std::time::Duration::from_secs(5))
            .keep_alive_timeout(std::time::Duration::from_secs(5));
        if let Some(timeout) = call_timeout {
            endpoint = endpoint.timeout(timeout);
        }
        if url.starts_with("https://") {
            let Some(ca_file) = &global.ca_file else {
                return Err(usage(format!(
                    "{url}: an https:// server needs --ca-file (or GATEWAYCTL_CA_FILE)"
                )));
            };
            let read = |flag: &str, path: &std::path::Path| {
                std::fs::read(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
            };
            let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
                tonic::transport::Certificate::from_pem(read("--ca-file", ca_file)?),
            );
            if let (Some(cert), Some(key)) = (&global.client_cert, &global.client_key) {
                tls = tls.identity(tonic::transport::Identity::from_pem(
                    read("--client-cert", cert)?,
                    read("--client-key", key)?,
                ));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| usage(format!("{url}: {e}")))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {url}: {}", error_chain(&e)))?;
        let inner = AdminClient::with_interceptor(channel, auth)
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        Ok(Client { inner })
    }

    pub(crate) async fn apply(
        &mut self,
        resources: Vec<v1::Resource>,
        dry_run: bool,
    ) -> anyhow::Result<v1::ApplyResponse> {
        let request = v1::ApplyRequest { resources, dry_run };
        Ok(self.inner.apply(request).await.map_err(api)?.into_inner())
    }

    pub(crate) async fn get(
        &mut self,
        kind: ResourceKind,
        name: &str,
    ) -> anyhow::Result<v1::Resource> {
        let request = v1::GetRequest {
            kind: kind.to_proto().into(),
            name: name.to_owned(),
        };
        Ok(self.inner.get(request).await.map_err(api)?.into_inner())
    }

    pub(crate) async fn list(&mut self, kind: ResourceKind) -> anyhow::Result<v1::ListResponse> {
        let request = v1::ListRequest {
            kind: kind.to_proto().into(),
        };
        Ok(self.inner.list(request).await.map_err(api)?.into_inner())
    }

    pub(crate) async fn delete(&mut self, kind: ResourceKind, name: &str) -> anyhow::Result<i64> {
        let request = v1::DeleteRequest {
            kind: kind.to_proto().into(),
            name: name.to_owned(),
        };
        let response = self.inner.delete(request).await.map_err(api)?;
        Ok(response.into_inner().version)
    }

    /// Opens a registration's stream: `requests` starts with the registration; the answers.
    pub(crate) async fn register(
        &mut self,
        requests: tokio_stream::wrappers::ReceiverStream<v1::RegisterRequest>,
    ) -> anyhow::Result<tonic::Streaming<v1::RegisterResponse>> {
        let response = self.inner.register(requests).await.map_err(api)?;
        Ok(response.into_inner())
    }

    pub(crate) async fn list_services(
        &mut self,
        service: &str,
    ) -> anyhow::Result<v1::ListServicesResponse> {
        let request = v1::ListServicesRequest {
            service: service.to_owned(),
        };
        let response = self.inner.list_services(request).await.map_err(api)?;
        Ok(response.into_inner())
    }

    pub(crate) async fn list_data_planes(&mut self) -> anyhow::Result<v1::ListDataPlanesResponse> {
        let response = self
            .inner
            .list_data_planes(v1::ListDataPlanesRequest {})
            .await
            .map_err(api)?;
        Ok(response.into_inner())
    }
}

pub(crate) fn api(status: Status) -> anyhow::Error {
    ApiError::from(status).into()
}

/// `--server` with `http://` added when it names no scheme.
fn server_url(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// The `authorization` value from `--token`, or else `--token-file`.
fn bearer(global: &GlobalArgs) -> anyhow::Result<Option<MetadataValue<Ascii>>> {
    let text = global
        .token_file
        .as_ref()
        .map(|file| {
            fs::read_to_string(file)
                .with_context(|| format!("--token-file {}", file.display()))
                .map_err(|e| usage(format!("{e:#}")))
        })
        .transpose()?;
    let token = gateway_proto::token::choose_token(text.as_deref(), global.token.as_deref())
        .map_err(|reason| usage(format!("the admin token: {reason}")))?;
    let Some(token) = token else {
        return Ok(None);
    };
    let mut value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| usage("the admin token is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// `error: cause: cause`, for transport errors whose Display is only "transport error".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{USAGE, exit_code};

    fn global(token: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            server: "127.0.0.1:1".into(),
            token: token.map(Into::into),
            token_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            timeout: std::time::Duration::from_secs(10),
        }
    }

    #[test]
    fn adds_a_scheme_when_missing() {
        assert_eq!(server_url("127.0.0.1:18000"), "http://127.0.0.1:18000");
        assert_eq!(server_url("http://cp:18000/"), "http://cp:18000");
    }

    #[test]
    fn the_interceptor_sends_the_bearer_token() {
        let mut auth = Auth(bearer(&global(Some(" s3cret\n"))).unwrap());
        let request = auth.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        let mut none = Auth(bearer(&global(None)).unwrap());
        let request = none.call(Request::new(())).unwrap();
        assert!(request.metadata().get("authorization").is_none());
    }

    #[test]
    fn reads_the_token_file_and_refuses_bad_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        fs::write(&file, "from-file\n").unwrap();
        let mut args = global(None);
        args.token_file = Some(file);
        assert_eq!(bearer(&args).unwrap().unwrap(), "Bearer from-file");
        args.token_file = Some(dir.path().join("missing"));
        assert_eq!(exit_code(&bearer(&args).unwrap_err()), USAGE);
        assert_eq!(exit_code(&bearer(&global(Some("é"))).unwrap_err()), USAGE);
    }
}
