use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, date_time_ymd};

use crate::{
    v1::{self, resource::Spec},
    validate::{FieldError, check_not_expired, validate},
};

/// A self-signed certificate for `names`, valid from `from` to `until` (years).
fn certificate(names: &[&str], from: i32, until: i32) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.not_before = date_time_ymd(from, 1, 1);
    params.not_after = date_time_ymd(until, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn resource(name: &str, hostnames: &[&str], pem: &(String, String), default: bool) -> v1::Resource {
    v1::Resource {
        name: name.into(),
        version: 0,
        spec: Some(Spec::Certificate(v1::CertificateSpec {
            hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
            certificate_pem: pem.0.clone(),
            private_key_pem: pem.1.clone(),
            default,
        })),
    }
}

fn errors(resources: &[v1::Resource]) -> Vec<(String, String)> {
    match validate(resources) {
        Ok(()) => Vec::new(),
        Err(e) => {
            e.0.into_iter()
                .map(|FieldError { name, field, .. }| (name, field))
                .collect()
        }
    }
}

#[test]
fn a_good_certificate_passes() {
    let pem = certificate(&["example.com", "*.example.com"], 2020, 2090);
    assert_eq!(
        errors(&[resource("c", &["example.com", "*.example.com"], &pem, true)]),
        []
    );
}

#[test]
fn a_key_that_is_not_the_leafs_is_refused() {
    let (cert, _) = certificate(&["example.com"], 2020, 2090);
    let (_, other_key) = certificate(&["example.com"], 2020, 2090);
    let got = errors(&[resource("c", &["example.com"], &(cert, other_key), false)]);
    assert_eq!(got, [("c".into(), "spec.privateKeyPem".into())]);
}

#[test]
fn malformed_pem_is_refused_naming_the_field() {
    let pem = certificate(&["example.com"], 2020, 2090);
    let no_cert = ("not pem".to_string(), pem.1.clone());
    assert_eq!(
        errors(&[resource("c", &["example.com"], &no_cert, false)]),
        [("c".into(), "spec.certificatePem".into())]
    );
    let no_key = (
        pem.0.clone(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
    );
    assert_eq!(
        errors(&[resource("c", &["example.com"], &no_key, false)]),
        [("c".into(), "spec.privateKeyPem".into())]
    );
}

#[test]
fn hostnames_must_be_covered_by_the_certificate() {
    let pem = certificate(&["example.com"], 2020, 2090);
    let got = errors(&[resource(
        "c",
        &["example.com", "*.example.com", "other.test"],
        &pem,
        false,
    )]);
    assert_eq!(
        got,
        [
            ("c".into(), "spec.hostnames[1]".into()),
            ("c".into(), "spec.hostnames[2]".into())
        ]
    );
}

#[test]
fn one_certificate_per_hostname_and_one_default() {
    let a = certificate(&["example.com"], 2020, 2090);
    let b = certificate(&["example.com"], 2020, 2090);
    let got = errors(&[
        resource("a", &["example.com"], &a, true),
        resource("b", &["example.com"], &b, true),
    ]);
    assert_eq!(
        got,
        [
            ("b".into(), "spec.hostnames[0]".into()),
            ("b".into(), "spec.default".into())
        ]
    );
}

#[test]
fn expired_and_future_certificates_are_refused_when_written() {
    let spec = |pem: &(String, String)| match resource("c", &["example.com"], pem, false).spec {
        Some(Spec::Certificate(spec)) => spec,
        _ => unreachable!(),
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027-01-15
    let expired = spec(&certificate(&["example.com"], 2020, 2021));
    let (field, message) = check_not_expired(&expired, now).unwrap_err();
    assert_eq!(field, "spec.certificatePem");
    assert!(
        message.contains("expired at 2021-01-01 00:00:00 UTC"),
        "{message}"
    );
    let future = spec(&certificate(&["example.com"], 2030, 2031));
    assert!(check_not_expired(&future, now).is_err());
    let current = spec(&certificate(&["example.com"], 2020, 2090));
    assert_eq!(check_not_expired(&current, now), Ok(()));
    // The graph check does not look at the clock: a stored certificate that expires later
    // does not make the whole configuration invalid.
    assert_eq!(
        errors(&[resource(
            "c",
            &["example.com"],
            &certificate(&["example.com"], 2020, 2021),
            false
        )]),
        []
    );
}
