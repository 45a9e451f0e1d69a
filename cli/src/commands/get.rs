//! `gatewayctl get KIND [NAME] [-o table|yaml|json]`.

use gateway_proto::{
    ResourceKind,
    document::{to_document, to_yaml},
    v1::{self, resource::Spec},
    validate::redact,
};

use crate::{
    args::{Format, GetArgs, GlobalArgs},
    client::Client,
    error::SUCCESS,
    kind::parse_kind,
    output::{Table, or_dash, out},
};

pub(crate) async fn run(global: &GlobalArgs, args: &GetArgs) -> anyhow::Result<u8> {
    let kind = parse_kind(&args.kind)?;
    let mut client = Client::connect(global).await?;
    match &args.name {
        Some(name) => {
            let mut resource = client.get(kind, name).await?;
            // The control plane never sends a key; an older one might.
            redact(&mut resource);
            out(&render_one(kind, &resource, args.output));
        }
        None => {
            let mut resources = client.list(kind).await?.resources;
            resources.iter_mut().for_each(redact);
            resources.sort_by(|a, b| a.name.cmp(&b.name));
            if resources.is_empty() && args.output == Format::Table {
                eprintln!("no {} found", kind.plural());
            } else {
                out(&render_list(kind, &resources, args.output));
            }
        }
    }
    Ok(SUCCESS)
}

/// One resource: a one-row table, one YAML document, or one JSON object.
fn render_one(kind: ResourceKind, resource: &v1::Resource, format: Format) -> String {
    match format {
        Format::Json => json(&to_document(resource)),
        _ => render_list(kind, std::slice::from_ref(resource), format),
    }
}

/// Several resources: a table, multi-document YAML, or a JSON array (which `apply -f -`
/// reads back).
fn render_list(kind: ResourceKind, resources: &[v1::Resource], format: Format) -> String {
    match format {
        Format::Table => table(kind, resources).render(),
        Format::Yaml => to_yaml(resources),
        Format::Json => json(&serde_json::Value::Array(
            resources.iter().map(to_document).collect(),
        )),
    }
}

/// The body of a policy, by its field name in the resource file.
fn policy_type(spec: &v1::PolicySpec) -> &'static str {
    use v1::policy_spec::Body;
    match &spec.body {
        Some(Body::IpAccess(_)) => "ipAccess",
        Some(Body::Cors(_)) => "cors",
        Some(Body::RequestLimits(_)) => "requestLimits",
        Some(Body::Jwt(_)) => "jwt",
        Some(Body::ApiKey(_)) => "apiKey",
        Some(Body::Authorization(_)) => "authorization",
        Some(Body::RateLimit(_)) => "rateLimit",
        Some(Body::RequestValidation(_)) => "requestValidation",
        Some(Body::ExternalAuth(_)) => "externalAuth",
        None => "-",
    }
}

fn json(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{e}"));
    text.push('\n');
    text
}

fn table(kind: ResourceKind, resources: &[v1::Resource]) -> Table {
    match kind {
        ResourceKind::Consumer => {
            let mut table = Table::new(&["NAME", "GROUPS", "API KEYS", "VERSION"]);
            for resource in resources {
                let Some(Spec::Consumer(spec)) = &resource.spec else {
                    continue;
                };
                table.push(vec![
                    resource.name.clone(),
                    or_dash(spec.groups.join(",")),
                    spec.api_keys.len().to_string(),
                    resource.version.to_string(),
                ]);
            }
            table
        }
        ResourceKind::ProtoSet => {
            let mut table = Table::new(&["NAME", "FILES", "SERVICES", "VERSION"]);
            for resource in resources {
                let Some(Spec::ProtoSet(spec)) = &resource.spec else {
                    continue;
                };
                // The services its own files define (not those of what they import).
                let services = gateway_proto::validate::compile_proto_set(spec).map_or_else(
                    |_| "-".to_owned(),
                    |pool| {
                        let own: Vec<String> = pool
                            .services()
                            .filter(|s| {
                                spec.files.is_empty()
                                    || spec.files.contains_key(s.parent_file().name())
                            })
                            .map(|s| s.full_name().to_owned())
                            .collect();
                        or_dash(own.join(","))
                    },
                );
                let files = if spec.files.is_empty() {
                    "descriptorSet".to_owned()
                } else {
                    spec.files.len().to_string()
                };
                table.push(vec![
                    resource.name.clone(),
                    files,
                    services,
                    resource.version.to_string(),
                ]);
            }
            table
        }
        ResourceKind::Certificate => {
            let mut table = Table::new(&["NAME", "HOSTNAMES", "DEFAULT", "NOT AFTER", "VERSION"]);
            for resource in resources {
                let Some(Spec::Certificate(spec)) = &resource.spec else {
                    continue;
                };
                table.push(vec![
                    resource.name.clone(),
                    or_dash(spec.hostnames.join(",")),
                    spec.default.to_string(),
                    or_dash(
                        gateway_proto::validate::certificate_not_after(spec).unwrap_or_default(),
                    ),
                    resource.version.to_string(),
                ]);
            }
            table
        }
        ResourceKind::Upstream => {
            let mut table = Table::new(&["NAME", "ENDPOINTS", "PROTOCOL", "TLS", "VERSION"]);
            for resource in resources {
                let Some(Spec::Upstream(spec)) = &resource.spec else {
                    continue;
                };
                table.push(vec![
                    resource.name.clone(),
                    spec.endpoints.len().to_string(),
                    upstream_protocol(spec).to_owned(),
                    upstream_tls(spec).to_owned(),
                    resource.version.to_string(),
                ]);
            }
            table
        }
        ResourceKind::Policy => {
            let mut table = Table::new(&["NAME", "TYPE", "GLOBAL", "VERSION"]);
            for resource in resources {
                let (body, global) = match &resource.spec {
                    Some(Spec::Policy(spec)) => (policy_type(spec), spec.global),
                    _ => ("-", false),
                };
                table.push(vec![
                    resource.name.clone(),
                    body.to_owned(),
                    global.to_string(),
                    resource.version.to_string(),
                ]);
            }
            table
        }
        ResourceKind::Route => {
            let mut table = Table::new(&["NAME", "HOSTNAMES", "RULES", "BACKENDS", "VERSION"]);
            for resource in resources {
                let empty = v1::RouteSpec::default();
                let spec = match &resource.spec {
                    Some(Spec::Route(spec)) => spec,
                    _ => &empty,
                };
                let mut backends: Vec<&str> = Vec::new();
                for backend in spec.rules.iter().flat_map(|rule| &rule.backend_refs) {
                    if !backends.contains(&backend.name.as_str()) {
                        backends.push(&backend.name);
                    }
                }
                let hostnames = if spec.hostnames.is_empty() {
                    "*".to_owned()
                } else {
                    spec.hostnames.join(",")
                };
                table.push(vec![
                    resource.name.clone(),
                    hostnames,
                    spec.rules.len().to_string(),
                    or_dash(backends.join(",")),
                    resource.version.to_string(),
                ]);
            }
            table
        }
    }
}

/// The protocol an upstream is spoken to with.
fn upstream_protocol(spec: &v1::UpstreamSpec) -> &'static str {
    use v1::upstream_spec::Protocol;
    match Protocol::try_from(spec.protocol) {
        Ok(Protocol::H2c) => "H2C",
        Ok(Protocol::H2) => "H2",
        _ => "HTTP1",
    }
}

/// How an upstream's TLS is set: `-` (none), `verify`, `mutual` (with a client
/// certificate) or `insecure` (verification off).
fn upstream_tls(spec: &v1::UpstreamSpec) -> &'static str {
    let h2 = spec.protocol == v1::upstream_spec::Protocol::H2 as i32;
    match &spec.tls {
        None if h2 => "verify",
        None => "-",
        Some(tls) if tls.insecure_skip_verify => "insecure",
        Some(tls) if !tls.client_certificate.is_empty() => "mutual",
        Some(_) => "verify",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_proto::document::parse_documents;

    const CONFIG: &str = r#"
kind: Upstream
name: users
spec:
  endpoints: [{ address: "127.0.0.1:9001" }, { address: "127.0.0.1:9002", weight: 2 }]
---
kind: Upstream
name: grpc
spec:
  protocol: H2
  endpoints: [{ address: "10.0.0.1:8443" }]
  tls: { clientCertificate: gateway }
---
kind: Route
name: users-api
spec:
  hostnames: [api.example.com, "*.example.org"]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /api/users } }]
      backendRefs: [{ name: users }, { name: legacy }]
    - backendRefs: [{ name: users }]
---
kind: Route
name: catch-all
spec:
  rules:
    - {}
"#;

    fn resources() -> Vec<v1::Resource> {
        let mut resources = parse_documents(CONFIG).unwrap();
        for (i, resource) in resources.iter_mut().enumerate() {
            resource.version = 10 + i as i64;
        }
        resources
    }

    #[test]
    fn renders_upstream_tables() {
        let upstreams = &resources()[..2];
        assert_eq!(
            render_list(ResourceKind::Upstream, upstreams, Format::Table),
            "NAME   ENDPOINTS  PROTOCOL  TLS     VERSION\n\
             users  2          HTTP1     -       10\n\
             grpc   1          H2        mutual  11\n"
        );
    }

    #[test]
    fn renders_route_tables() {
        let routes = &resources()[2..];
        assert_eq!(
            render_list(ResourceKind::Route, routes, Format::Table),
            "NAME       HOSTNAMES                      RULES  BACKENDS      VERSION\n\
             users-api  api.example.com,*.example.org  2      users,legacy  12\n\
             catch-all  *                              1      -             13\n"
        );
    }

    #[test]
    fn json_and_yaml_read_back_as_the_same_resources() {
        let resources = resources();
        for format in [Format::Json, Format::Yaml] {
            let text = render_list(ResourceKind::Route, &resources, format);
            assert_eq!(parse_documents(&text).unwrap(), resources, "{text}");
        }
        let one = render_one(ResourceKind::Upstream, &resources[0], Format::Json);
        assert!(one.starts_with('{'), "{one}");
        assert_eq!(parse_documents(&one).unwrap(), resources[..1]);
        assert_eq!(render_list(ResourceKind::Route, &[], Format::Json), "[]\n");
    }
}
