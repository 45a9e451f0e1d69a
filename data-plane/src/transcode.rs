//! REST/JSON to gRPC (the `GrpcTranscode` filter), the parts that need no network, compiled
//! off the request path: [`Methods`] chooses the gRPC method for an HTTP method and path by the
//! `google.api.http` bindings of the filter's services ([`path`] matches one template); [`json`]
//! builds the protobuf request from the path's variables, the query and the JSON body, and
//! turns the protobuf response into JSON (the proto3 JSON mapping, prost-reflect's); [`grpc`]
//! frames messages and maps gRPC statuses to HTTP. The exchange itself (one HTTP/2 stream to the
//! upstream) joins the front ends with the filter.

use http::uri::PathAndQuery;
use prost_reflect::{DescriptorPool, MethodDescriptor};

use gateway_proto::{
    http_rule::{self, Binding},
    v1,
};

pub use self::json::{BadRequest, Options};

/// A rule's `GrpcTranscode` filter, compiled: the ProtoSet's descriptors and the methods the
/// filter exposes.
#[derive(Debug)]
pub struct Transcoder {
    pool: DescriptorPool,
    methods: Methods,
    options: Options,
    request_headers: Box<[http::HeaderName]>,
    response_headers: Box<[http::HeaderName]>,
}

impl Transcoder {
    /// The transcoder of a validated filter and its ProtoSet; `None` if the set does not
    /// compile (validation refused such a configuration).
    pub fn compile(filter: &v1::GrpcTranscode, proto_set: &v1::ProtoSetSpec) -> Option<Self> {
        let pool = gateway_proto::validate::compile_proto_set(proto_set).ok()?;
        let methods = Methods::compile(&pool, &filter.services, filter.allow_unannotated);
        Some(Self {
            pool,
            methods,
            options: Options {
                ignore_unknown_fields: filter.ignore_unknown_fields,
                emit_defaults: filter.emit_defaults,
            },
            request_headers: names(&filter.request_headers),
            response_headers: names(&filter.response_headers),
        })
    }

    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    pub fn options(&self) -> Options {
        self.options
    }

    /// Client headers passed as metadata.
    pub fn request_headers(&self) -> &[http::HeaderName] {
        &self.request_headers
    }

    /// Metadata and trailers returned as headers.
    pub fn response_headers(&self) -> &[http::HeaderName] {
        &self.response_headers
    }
}

/// Header names as configured (validated), lower-cased.
fn names(names: &[String]) -> Box<[http::HeaderName]> {
    names
        .iter()
        .filter_map(|name| http::HeaderName::from_bytes(name.as_bytes()).ok())
        .collect()
}

pub mod grpc;
pub mod json;
pub mod path;

/// The methods a filter exposes, with their bindings.
#[derive(Debug)]
pub struct Methods {
    bindings: Vec<Bound>,
}

/// One binding of a method, with what its requests need.
#[derive(Debug)]
struct Bound {
    method: MethodDescriptor,
    binding: Binding,
    shape: Shape,
    /// `/pkg.Service/Method`, made once.
    grpc_path: PathAndQuery,
}

/// What a binding's request needs besides the body: whether the body can be read straight
/// into the message (the whole request is the body, and no message it holds has a oneof,
/// whose members the JSON mapping would let a later one override silently).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) direct_body: bool,
}

/// A request matched to a method: its binding, and the path's values for the binding's
/// variables (by field path, percent-decoded).
#[derive(Debug)]
pub struct Matched<'m> {
    pub method: &'m MethodDescriptor,
    pub binding: &'m Binding,
    pub captures: Vec<(String, String)>,
    pub(crate) shape: Shape,
    pub(crate) grpc_path: &'m PathAndQuery,
}

impl Methods {
    /// The bindings of `services` in `pool`; a service or a rule that does not check is left
    /// out (validation refused the configuration if any did).
    pub fn compile(pool: &DescriptorPool, services: &[String], allow_unannotated: bool) -> Self {
        let mut bindings = Vec::new();
        for name in services {
            let Some(service) = pool.get_service_by_name(name) else {
                continue;
            };
            for method in service.methods() {
                if let Ok(mut found) = http_rule::bindings(&method) {
                    if found.is_empty() && allow_unannotated {
                        found.push(http_rule::unannotated(&method));
                    }
                    let no_oneofs = !has_oneofs(&method.input(), &mut Vec::new());
                    let Ok(grpc_path) = PathAndQuery::try_from(format!(
                        "/{}/{}",
                        service.full_name(),
                        method.name()
                    )) else {
                        continue;
                    };
                    bindings.extend(found.into_iter().map(|binding| {
                        let direct_body = no_oneofs && binding.body.as_deref() == Some("*");
                        Bound {
                            method: method.clone(),
                            binding,
                            shape: Shape { direct_body },
                            grpc_path: grpc_path.clone(),
                        }
                    }));
                }
            }
        }
        // The most specific first: more literal segments, then no `**`, so `/v1/shelves:batch`
        // or `/v1/shelves/special` wins over `/v1/{name=shelves/*}`.
        bindings.sort_by_key(|b| std::cmp::Reverse(path::specificity(&b.binding.template)));
        Self { bindings }
    }

    /// The method for `method` and `path` (no query), if any binding matches.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        self.bindings.iter().find_map(|bound| {
            if bound.binding.method != method {
                return None;
            }
            let captures = path::capture(&bound.binding.template, path)?;
            Some(Matched {
                method: &bound.method,
                binding: &bound.binding,
                captures,
                shape: bound.shape,
                grpc_path: &bound.grpc_path,
            })
        })
    }

    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }
}

/// Percent-decodes `raw`; `keep_slash` leaves `%2F` encoded (a `**` capture, where a decoded
/// slash would mean another segment). `None` for a bad escape.
pub(crate) fn percent_decode(raw: &[u8], keep_slash: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let hex = std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if keep_slash && byte == b'/' {
                out.extend_from_slice(&raw[i..i + 3]);
            } else {
                out.push(byte);
            }
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Whether `message`, or a message it holds (the well-known types aside), has a oneof.
fn has_oneofs(message: &prost_reflect::MessageDescriptor, seen: &mut Vec<String>) -> bool {
    if message.full_name().starts_with("google.protobuf.")
        || seen.iter().any(|s| s == message.full_name())
    {
        return false;
    }
    seen.push(message.full_name().to_owned());
    message.oneofs().any(|o| !o.is_synthetic())
        || message.fields().any(|field| match field.kind() {
            prost_reflect::Kind::Message(inner) => has_oneofs(&inner, seen),
            _ => false,
        })
}

#[cfg(test)]
mod tests;
