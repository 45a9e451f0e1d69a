//! The kinds of resources, with the names users and the store know them by.

use std::fmt;

use crate::v1::{self, resource::Spec};

/// A kind of resource. The order is the order of dependencies: an upstream before the routes
/// that use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Consumer,
    Certificate,
    ProtoSet,
    Upstream,
    Policy,
    Route,
}

// === impl ResourceKind ===

impl ResourceKind {
    /// Every kind, in dependency order.
    pub const ALL: [ResourceKind; 6] = [
        ResourceKind::Consumer,
        ResourceKind::Certificate,
        ResourceKind::ProtoSet,
        ResourceKind::Upstream,
        ResourceKind::Policy,
        ResourceKind::Route,
    ];

    /// The `kind:` of a resource document, e.g. `Route`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Consumer => "Consumer",
            ResourceKind::Certificate => "Certificate",
            ResourceKind::ProtoSet => "ProtoSet",
            ResourceKind::Upstream => "Upstream",
            ResourceKind::Policy => "Policy",
            ResourceKind::Route => "Route",
        }
    }

    /// The plural, lower-case name: the store key segment and the CLI's `get` argument.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Consumer => "consumers",
            ResourceKind::Certificate => "certificates",
            ResourceKind::ProtoSet => "protosets",
            ResourceKind::Upstream => "upstreams",
            ResourceKind::Policy => "policies",
            ResourceKind::Route => "routes",
        }
    }

    /// Parses `Route`, `route` or `routes` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| {
            s.eq_ignore_ascii_case(kind.as_str()) || s.eq_ignore_ascii_case(kind.plural())
        })
    }

    /// The kind of a resource, from the spec it carries.
    pub fn of(resource: &v1::Resource) -> Option<Self> {
        match resource.spec.as_ref()? {
            Spec::Consumer(_) => Some(ResourceKind::Consumer),
            Spec::Certificate(_) => Some(ResourceKind::Certificate),
            Spec::ProtoSet(_) => Some(ResourceKind::ProtoSet),
            Spec::Upstream(_) => Some(ResourceKind::Upstream),
            Spec::Policy(_) => Some(ResourceKind::Policy),
            Spec::Route(_) => Some(ResourceKind::Route),
        }
    }

    /// The full protobuf name of this kind's spec message.
    pub(crate) fn spec_message(self) -> &'static str {
        match self {
            ResourceKind::Consumer => "gateway.v1.ConsumerSpec",
            ResourceKind::Certificate => "gateway.v1.CertificateSpec",
            ResourceKind::ProtoSet => "gateway.v1.ProtoSetSpec",
            ResourceKind::Upstream => "gateway.v1.UpstreamSpec",
            ResourceKind::Policy => "gateway.v1.PolicySpec",
            ResourceKind::Route => "gateway.v1.RouteSpec",
        }
    }

    pub fn to_proto(self) -> v1::Kind {
        match self {
            ResourceKind::Consumer => v1::Kind::Consumer,
            ResourceKind::Certificate => v1::Kind::Certificate,
            ResourceKind::ProtoSet => v1::Kind::ProtoSet,
            ResourceKind::Upstream => v1::Kind::Upstream,
            ResourceKind::Policy => v1::Kind::Policy,
            ResourceKind::Route => v1::Kind::Route,
        }
    }

    /// `None` for `KIND_UNSPECIFIED` and unknown values.
    pub fn from_proto(kind: i32) -> Option<Self> {
        match v1::Kind::try_from(kind).ok()? {
            v1::Kind::Consumer => Some(ResourceKind::Consumer),
            v1::Kind::Certificate => Some(ResourceKind::Certificate),
            v1::Kind::ProtoSet => Some(ResourceKind::ProtoSet),
            v1::Kind::Upstream => Some(ResourceKind::Upstream),
            v1::Kind::Policy => Some(ResourceKind::Policy),
            v1::Kind::Route => Some(ResourceKind::Route),
            v1::Kind::Unspecified => None,
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
