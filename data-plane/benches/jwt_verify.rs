//! What verifying a token costs the request path, per algorithm: the `jwt` policy's own
//! verify (read the token from `Authorization`, parse its header, pick the key, check the
//! signature and the claims) on one core, keys generated here. "First": each of `--tokens`
//! distinct tokens once (the signature checked); "again": one token `--iterations` times (the
//! policy's cache of verified tokens answers, `exp` checked each time).
//!
//! `cargo bench -p gateway-data-plane --bench jwt_verify -- [--tokens N] [--iterations N]`

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use gateway_data_plane::{side::SideTables, table::jwt::Jwt};
use gateway_proto::v1;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn main() {
    let mut iterations = 50_000u32;
    let mut tokens = 1_000u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|n| n.parse().ok());
        match arg.as_str() {
            "--iterations" => iterations = value().expect("--iterations N"),
            "--tokens" => tokens = value().expect("--tokens N"),
            _ => {}
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let claims = |jti: u32| {
        serde_json::json!({
            "sub": "acme", "iss": "https://idp.test", "aud": "api", "exp": now + 3600,
            "scope": "orders:read orders:write", "jti": jti,
        })
    };
    println!("algorithm  µs first  verifies/s first  µs again  verifies/s again");
    for (name, algorithm) in [
        ("HS256", Algorithm::HS256),
        ("RS256", Algorithm::RS256),
        ("PS256", Algorithm::PS256),
        ("ES256", Algorithm::ES256),
        ("ES384", Algorithm::ES384),
        ("EdDSA", Algorithm::EdDSA),
    ] {
        let (encoding, provider) = keys(algorithm);
        let signed: Vec<http::HeaderMap> = (0..tokens)
            .map(|jti| {
                let token = jsonwebtoken::encode(&Header::new(algorithm), &claims(jti), &encoding)
                    .expect("a token");
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    http::header::AUTHORIZATION,
                    format!("Bearer {token}").parse().expect("a header value"),
                );
                headers
            })
            .collect();
        let jwt = Jwt::compile(
            &v1::JwtPolicy {
                providers: vec![v1::JwtProvider {
                    name: "bench".into(),
                    issuer: "https://idp.test".into(),
                    audiences: vec!["api".into()],
                    algorithms: vec![name.into()],
                    ..provider
                }],
                ..Default::default()
            },
            &SideTables::default(),
        );
        let started = Instant::now();
        for headers in &signed {
            assert!(jwt.verify(headers, None).is_ok(), "{name} verifies");
        }
        let first = started.elapsed().as_secs_f64() / f64::from(tokens);
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(jwt.verify(&signed[0], None).is_ok());
        }
        let again = started.elapsed().as_secs_f64() / f64::from(iterations);
        println!(
            "{name:9}  {:8.1}  {:16.0}  {:8.2}  {:16.0}",
            first * 1e6,
            1.0 / first,
            again * 1e6,
            1.0 / again
        );
    }
}

/// A signing key for `algorithm` and the provider fields that verify with it.
fn keys(algorithm: Algorithm) -> (EncodingKey, v1::JwtProvider) {
    let generate = |alg: &'static rcgen::SignatureAlgorithm| {
        rcgen::KeyPair::generate_for(alg).expect("key generation")
    };
    let pem_provider = |pair: &rcgen::KeyPair| v1::JwtProvider {
        key_pem: pair.public_key_pem(),
        ..Default::default()
    };
    match algorithm {
        Algorithm::HS256 => {
            let secret = b"a bench secret of thirty-two by.";
            let k = base64url(secret);
            (
                EncodingKey::from_secret(secret).expect("an HMAC key"),
                v1::JwtProvider {
                    jwks: format!(r#"{{"keys":[{{"kty":"oct","k":"{k}"}}]}}"#),
                    ..Default::default()
                },
            )
        }
        Algorithm::RS256 | Algorithm::PS256 => {
            let pair = generate(&rcgen::PKCS_RSA_SHA256);
            let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("RSA");
            (key, pem_provider(&pair))
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let alg = if algorithm == Algorithm::ES256 {
                &rcgen::PKCS_ECDSA_P256_SHA256
            } else {
                &rcgen::PKCS_ECDSA_P384_SHA384
            };
            let pair = generate(alg);
            let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("EC");
            (key, pem_provider(&pair))
        }
        _ => {
            let pair = generate(&rcgen::PKCS_ED25519);
            let key = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).expect("Ed25519");
            (key, pem_provider(&pair))
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}
