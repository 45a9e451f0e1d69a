//! The endpoints an upstream is compiled with: those it lists (or the registry's), each DNS
//! name among them replaced by one endpoint per address of its last good answer (the listed
//! weight each; the answer sorted, so that every data plane builds the same consistent-hash
//! table from the same answer). A name with no answer yet stays one endpoint, resolved at
//! connect time, so that a compile never waits for DNS.

use std::sync::Arc;

use gateway_proto::v1;

use crate::side::dns::{Answer, Dns, Name};

/// One endpoint to compile.
#[derive(Debug)]
pub(super) struct Planned {
    /// What its pool connects to: `ip:port`, or the listed address.
    pub(super) address: String,
    pub(super) weight: u32,
    /// The DNS name `address` was resolved from: the TLS server name of its connections.
    pub(super) host: Option<Arc<str>>,
    /// `host:port` as listed: the `Host` of its health checks.
    pub(super) authority: String,
}

/// An upstream's endpoints, and the names they came from.
#[derive(Debug, Default)]
pub(super) struct Expanded {
    pub(super) endpoints: Vec<Planned>,
    /// Each name listed, with the answer compiled (`None`: it stayed a name).
    pub(super) names: Vec<(Arc<Name>, Option<Answer>)>,
}

pub(super) fn expand(listed: &[v1::Endpoint], dns: &Dns) -> Expanded {
    let mut expanded = Expanded::default();
    for endpoint in listed {
        let weight = endpoint.weight.unwrap_or(1);
        let name = dns.name(&endpoint.address);
        let answer = name.as_ref().and_then(|name| name.answer());
        match (&name, &answer) {
            (Some(name), Some(answer)) => {
                expanded
                    .endpoints
                    .extend(answer.addresses().iter().map(|address| Planned {
                        address: address.to_string(),
                        weight,
                        host: Some(name.host().clone()),
                        authority: endpoint.address.clone(),
                    }));
            }
            _ => expanded.endpoints.push(Planned {
                address: endpoint.address.clone(),
                weight,
                host: None,
                authority: endpoint.address.clone(),
            }),
        }
        if let Some(name) = name {
            expanded.names.push((name, answer));
        }
    }
    expanded
}
