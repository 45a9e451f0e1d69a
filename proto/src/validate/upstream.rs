//! An Upstream on its own: endpoints (listed, or a service of the registry), weights, timeouts,
//! and how it is spoken to (protocol and TLS). The one reference it holds, a client
//! certificate by name, is checked with the graph ([`check_references`]).

use std::collections::{HashMap, HashSet};

use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};

use super::{At, check_duration, check_weight};
use crate::{names, v1};

pub(super) fn check_upstream(at: &mut At<'_>, spec: &v1::UpstreamSpec) {
    // Exactly one source of endpoints. An upstream with `discovery` may have no instances at
    // any moment (it answers 503 then), so nothing below may rely on endpoints being listed.
    match (&spec.discovery, spec.endpoints.is_empty()) {
        (None, true) => at.error(
            "spec.endpoints",
            "must list at least one endpoint (or set spec.discovery)".into(),
        ),
        (Some(_), false) => at.error(
            "spec.discovery",
            "takes the endpoints from the registry: leave spec.endpoints out".into(),
        ),
        _ => {}
    }
    if let Some(discovery) = &spec.discovery
        && let Err(reason) = names::check_resource_name(&discovery.service)
    {
        at.error("spec.discovery.service", reason);
    }
    let mut addresses = HashMap::new();
    for (i, endpoint) in spec.endpoints.iter().enumerate() {
        if let Err(reason) = names::check_address(&endpoint.address) {
            at.error(&format!("spec.endpoints[{i}].address"), reason);
        } else if let Some(first) = addresses.insert(endpoint.address.as_str(), i) {
            at.error(
                &format!("spec.endpoints[{i}].address"),
                format!("{:?} is already spec.endpoints[{first}]", endpoint.address),
            );
        }
        check_weight(at, &format!("spec.endpoints[{i}].weight"), endpoint.weight);
    }
    check_duration(at, "spec.timeout", spec.timeout.as_ref());
    check_duration(at, "spec.connectTimeout", spec.connect_timeout.as_deref());
    check_duration(at, "spec.idleTimeout", spec.idle_timeout.as_deref());
    if let Some(idle) = &spec.idle_timeout
        && (idle.seconds < 1 || idle.seconds > 3600 || (idle.seconds == 3600 && idle.nanos > 0))
    {
        at.error("spec.idleTimeout", "must be between 1s and 1h".into());
    }
    let protocol = v1::upstream_spec::Protocol::try_from(spec.protocol);
    if protocol.is_err() {
        at.error(
            "spec.protocol",
            format!("unknown protocol {}: HTTP1, H2C or H2", spec.protocol),
        );
    }
    if let Some(tls) = &spec.tls {
        if protocol == Ok(v1::upstream_spec::Protocol::H2c) {
            at.error(
                "spec.tls",
                "H2C is HTTP/2 in cleartext: use protocol H2 for HTTP/2 over TLS".into(),
            );
        }
        check_tls(at, tls);
    }
    super::resilience::check_resilience(at, spec);
}

fn check_tls(at: &mut At<'_>, tls: &v1::UpstreamTls) {
    if !tls.sni.is_empty() && ServerName::try_from(tls.sni.as_str()).is_err() {
        at.error(
            "spec.tls.sni",
            format!("{:?} is not a DNS name or an IP address", tls.sni),
        );
    }
    if !tls.ca_certificate_pem.is_empty() {
        if tls.insecure_skip_verify {
            at.error(
                "spec.tls.caCertificatePem",
                "is never used with insecureSkipVerify: set one or the other".into(),
            );
        }
        if let Err(reason) = trust_anchors(&tls.ca_certificate_pem) {
            at.error("spec.tls.caCertificatePem", reason);
        }
    }
    if !tls.client_certificate.is_empty()
        && let Err(reason) = names::check_resource_name(&tls.client_certificate)
    {
        at.error("spec.tls.clientCertificate", reason);
    }
}

/// The CA certificates of a PEM bundle, each usable as a trust anchor.
pub fn trust_anchors(pem: &str) -> Result<rustls::RootCertStore, String> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not PEM certificates: {e}"))?;
    if certificates.is_empty() {
        return Err("holds no certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, certificate) in certificates.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|e| format!("certificate {i} is not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// An upstream's client certificate names a Certificate of the configuration.
pub(super) fn check_references(
    at: &mut At<'_>,
    spec: &v1::UpstreamSpec,
    certificates: &HashSet<&str>,
) {
    let Some(tls) = &spec.tls else { return };
    let name = tls.client_certificate.as_str();
    if !name.is_empty() && !certificates.contains(name) {
        at.error(
            "spec.tls.clientCertificate",
            format!("no Certificate is named {name:?}"),
        );
    }
}
