//! The certificates a TLS listener serves, by the client's SNI: an exact name first, then the
//! wildcard of the name's parent (`*.example.com` covers `a.example.com`, not `example.com` or
//! `a.b.example.com`), then the default. Built with the table, so a new or rotated certificate
//! is served to the next handshake after a swap.

use std::sync::Arc;

use super::hash::FxHashMap;
use gateway_proto::v1::{self, resource::Spec};
use rustls::sign::CertifiedKey;

#[derive(Debug, Default)]
pub struct Certificates {
    exact: FxHashMap<Box<str>, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: FxHashMap<Box<str>, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Validated certificates (one that would not parse is left out, never reached: validation
    /// refuses it).
    pub(crate) fn compile(resources: &[v1::Resource]) -> Self {
        let mut certificates = Self::default();
        for resource in resources {
            let Some(Spec::Certificate(spec)) = &resource.spec else {
                continue;
            };
            let Ok(key) = gateway_proto::validate::parse_certificate(spec) else {
                continue;
            };
            let key = Arc::new(key);
            for hostname in &spec.hostnames {
                let map = match hostname.strip_prefix("*.") {
                    Some(parent) => (&mut certificates.wildcard, parent),
                    None => (&mut certificates.exact, hostname.as_str()),
                };
                map.0.insert(map.1.into(), key.clone());
            }
            if spec.default {
                certificates.default = Some(key);
            }
        }
        certificates
    }

    /// The certificate for a handshake with this SNI (rustls gives it lower-cased, without a
    /// trailing dot), if any.
    pub fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            if let Some(key) = self.exact.get(name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = self.wildcard.get(parent)
            {
                return Some(key.clone());
            }
        }
        self.default.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.default.is_none()
    }
}
