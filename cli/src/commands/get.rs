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
            let mut table = Table::new(&["NAME", "ENDPOINTS", "VERSION"]);
            for resource in resources {
                let endpoints = match &resource.spec {
                    Some(Spec::Upstream(spec)) => spec.endpoints.len(),
                    _ => 0,
                };
                table.push(vec![
                    resource.name.clone(),
                    endpoints.to_string(),
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
        let upstreams = &resources()[..1];
        assert_eq!(
            render_list(ResourceKind::Upstream, upstreams, Format::Table),
            "NAME   ENDPOINTS  VERSION\nusers  2          10\n"
        );
    }

    #[test]
    fn renders_route_tables() {
        let routes = &resources()[1..];
        assert_eq!(
            render_list(ResourceKind::Route, routes, Format::Table),
            "NAME       HOSTNAMES                      RULES  BACKENDS      VERSION\n\
             users-api  api.example.com,*.example.org  2      users,legacy  11\n\
             catch-all  *                              1      -             12\n"
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
