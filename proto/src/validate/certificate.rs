//! A Certificate on its own: a PEM chain and key that parse, a key that is the leaf's, and
//! hostnames the leaf covers; across certificates, each hostname served by one and at most
//! one default. Expiry depends on the clock, so it is not part of the graph (a stored
//! certificate that expires must not make every later configuration invalid): the control
//! plane checks it for the certificates it is asked to write ([`check_not_expired`]).

mod der;

use std::{collections::HashMap, time::SystemTime};

use rustls::{crypto::aws_lc_rs, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};

use super::{At, Report};
use crate::{names, v1};

/// The chain and key of a certificate, parsed: what a data plane serves.
pub fn parse(spec: &v1::CertificateSpec) -> Result<CertifiedKey, (&'static str, String)> {
    if spec.private_key_pem.trim() == REDACTED {
        return Err((
            "spec.privateKeyPem",
            "is redacted: give the private key itself (reads never show it)".into(),
        ));
    }
    let chain = CertificateDer::pem_slice_iter(spec.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            (
                "spec.certificatePem",
                format!("is not PEM certificates: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err((
            "spec.certificatePem",
            "holds no certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(spec.private_key_pem.as_bytes()).map_err(|e| {
        (
            "spec.privateKeyPem",
            format!("is not a PEM private key: {e}"),
        )
    })?;
    CertifiedKey::from_der(chain, key, &aws_lc_rs::default_provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => (
            "spec.privateKeyPem",
            "is not the key of the leaf certificate (the first in spec.certificatePem)".into(),
        ),
        other => ("spec.privateKeyPem", format!("cannot be used: {other}")),
    })
}

pub(super) fn check_certificate(at: &mut At<'_>, spec: &v1::CertificateSpec) {
    if spec.hostnames.is_empty() && !spec.default {
        at.error(
            "spec.hostnames",
            "must list at least one hostname (or the certificate must be the default)".into(),
        );
    }
    let mut seen = HashMap::new();
    for (i, hostname) in spec.hostnames.iter().enumerate() {
        let field = format!("spec.hostnames[{i}]");
        if let Err(reason) = names::check_hostname(hostname) {
            at.error(&field, reason);
        } else if let Some(first) = seen.insert(hostname.as_str(), i) {
            at.error(
                &field,
                format!("{hostname:?} is already spec.hostnames[{first}]"),
            );
        }
    }
    let key = match parse(spec) {
        Ok(key) => key,
        Err((field, message)) => return at.error(field, message),
    };
    let Some(leaf) = key.cert.first() else {
        return;
    };
    let Ok(leaf) = webpki::EndEntityCert::try_from(leaf) else {
        return at.error(
            "spec.certificatePem",
            "the leaf is not a valid X.509 certificate".into(),
        );
    };
    for (i, hostname) in spec.hostnames.iter().enumerate() {
        if names::check_hostname(hostname).is_err() {
            continue;
        }
        // A wildcard is covered by a wildcard name in the certificate: any one label stands in.
        let probe = match hostname.strip_prefix("*.") {
            Some(rest) => format!("wildcard-probe.{rest}"),
            None => hostname.clone(),
        };
        let covered = ServerName::try_from(probe.as_str())
            .is_ok_and(|name| leaf.verify_is_valid_for_subject_name(&name).is_ok());
        if !covered {
            at.error(
                &format!("spec.hostnames[{i}]"),
                format!("{hostname:?} is not among the certificate's subject alternative names"),
            );
        }
    }
}

/// Across every certificate: a hostname is served by one certificate, and one is the default.
pub(super) fn check_certificates<'a>(
    report: &mut Report,
    certificates: impl IntoIterator<Item = (&'a str, &'a v1::CertificateSpec)>,
) {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut default: Option<&str> = None;
    let mut sorted: Vec<_> = certificates.into_iter().collect();
    sorted.sort_by_key(|(name, _)| *name);
    for (name, spec) in sorted {
        for (i, hostname) in spec.hostnames.iter().enumerate() {
            if let Some(other) = names.insert(hostname, name)
                && other != name
            {
                report.push(
                    "Certificate",
                    name,
                    &format!("spec.hostnames[{i}]"),
                    format!("{hostname:?} is already served by certificate {other:?}"),
                );
            }
        }
        if spec.default {
            match default {
                Some(other) => report.push(
                    "Certificate",
                    name,
                    "spec.default",
                    format!("certificate {other:?} is already the default"),
                ),
                None => default = Some(name),
            }
        }
    }
}

/// The leaf is valid at `now`: refused when written if it has expired or is not valid yet.
pub fn check_not_expired(
    spec: &v1::CertificateSpec,
    now: SystemTime,
) -> Result<(), (&'static str, String)> {
    // A chain that does not parse is the graph check's to report.
    let Ok(key) = parse(spec) else {
        return Ok(());
    };
    let Some(leaf) = key.cert.first() else {
        return Ok(());
    };
    let Some((not_before, not_after)) = der::validity(leaf) else {
        return Err((
            "spec.certificatePem",
            "the leaf's validity period cannot be read".into(),
        ));
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if now > not_after {
        return Err((
            "spec.certificatePem",
            format!("the leaf expired at {}", der::format_time(not_after)),
        ));
    }
    if now < not_before {
        return Err((
            "spec.certificatePem",
            format!(
                "the leaf is not valid before {}",
                der::format_time(not_before)
            ),
        ));
    }
    Ok(())
}

/// When the leaf stops being valid, as `YYYY-MM-DD HH:MM:SS UTC`; `None` if the chain does not
/// parse.
pub fn not_after(spec: &v1::CertificateSpec) -> Option<String> {
    let chain = CertificateDer::pem_slice_iter(spec.certificate_pem.as_bytes())
        .next()?
        .ok()?;
    der::validity(&chain).map(|(_, until)| der::format_time(until))
}

/// What reads show instead of a private key.
pub const REDACTED: &str = "<redacted>";

/// Replaces the resource's secrets with [`REDACTED`]: what every read of the config returns.
pub fn redact(resource: &mut v1::Resource) {
    if let Some(v1::resource::Spec::Certificate(spec)) = &mut resource.spec
        && !spec.private_key_pem.is_empty()
    {
        spec.private_key_pem = REDACTED.into();
    }
}

#[cfg(test)]
mod tests;
