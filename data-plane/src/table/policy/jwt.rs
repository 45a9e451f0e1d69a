//! The `jwt` policy, compiled: each provider's keys parsed once, its checks set up once. A
//! token is verified against the provider's own keys only: the token's `jku`, `x5u` and `jwk`
//! headers are never looked at, `none` is not an algorithm here, and a key is used only for
//! the algorithms of its type (an RSA public key is never an HMAC secret).

use std::borrow::Cow;

use gateway_proto::{jwt, v1};
use http::HeaderName;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::identity::Source;
use crate::table::RequestHeaders;

/// Tokens longer than this are refused unread, unless the policy says otherwise.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Leeway on `exp` and `nbf` where a provider sets none.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 30;

#[derive(Debug)]
pub struct Jwt {
    providers: Box<[Provider]>,
    pub strip_token: bool,
    max_token_bytes: usize,
}

#[derive(Debug)]
pub struct Provider {
    pub name: Box<str>,
    keys: Box<[jwt::Key]>,
    validation: Validation,
    pub forward: Box<[(Box<str>, HeaderName)]>,
    pub sources: Box<[Source]>,
    pub consumer_claim: Option<Box<str>>,
}

/// Why a request has no verified token.
#[derive(Debug)]
pub enum Refusal {
    /// No provider's source holds a token.
    Missing,
    /// A token, refused; the reason is for the log only.
    Invalid(Cow<'static, str>),
}

/// A verified token: its provider and its claims.
#[derive(Debug)]
pub struct Verified<'p> {
    pub provider: &'p Provider,
    pub claims: Map<String, Value>,
}

impl Jwt {
    pub(crate) fn compile(policy: &v1::JwtPolicy) -> Self {
        Self {
            providers: policy.providers.iter().map(Provider::compile).collect(),
            strip_token: policy.strip_token,
            max_token_bytes: policy
                .max_token_bytes
                .map_or(DEFAULT_MAX_TOKEN_BYTES, |n| n as usize),
        }
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The first provider that verifies the token its sources find.
    pub fn verify(
        &self,
        headers: &dyn RequestHeaders,
        query: Option<&str>,
    ) -> Result<Verified<'_>, Refusal> {
        let mut refusal = Refusal::Missing;
        for provider in self.providers.iter() {
            let Some(token) = provider.sources.iter().find_map(|s| s.find(headers, query)) else {
                continue;
            };
            if token.len() > self.max_token_bytes {
                refusal = Refusal::Invalid("the token is over the size limit".into());
                continue;
            }
            match provider.verify(&token) {
                Ok(claims) => return Ok(Verified { provider, claims }),
                Err(reason) => refusal = Refusal::Invalid(reason),
            }
        }
        Err(refusal)
    }
}

impl Provider {
    fn compile(spec: &v1::JwtProvider) -> Self {
        let algorithms: Vec<Algorithm> = spec
            .algorithms
            .iter()
            .filter_map(|a| jwt::algorithm(a))
            .collect();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = algorithms;
        validation.leeway = spec
            .clock_skew
            .as_ref()
            .and_then(gateway_proto::duration::from_proto)
            .map_or(DEFAULT_CLOCK_SKEW_SECS, |d| d.as_secs());
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if !spec.issuer.is_empty() {
            validation.set_issuer(&[&spec.issuer]);
            required.push("iss");
        }
        if spec.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&spec.audiences);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let mut sources: Vec<Source> = spec.token_from.iter().filter_map(Source::compile).collect();
        if sources.is_empty() {
            sources.push(Source::bearer());
        }
        Self {
            name: spec.name.as_str().into(),
            // Validation refused keys that do not parse.
            keys: jwt::inline_keys(spec).unwrap_or_default().into(),
            validation,
            forward: spec
                .forward_claims
                .iter()
                .filter_map(|f| {
                    Some((
                        f.claim.as_str().into(),
                        HeaderName::from_bytes(f.header.as_bytes()).ok()?,
                    ))
                })
                .collect(),
            sources: sources.into(),
            consumer_claim: (!spec.consumer_claim.is_empty())
                .then(|| spec.consumer_claim.as_str().into()),
        }
    }

    /// The token's claims when one of this provider's keys verifies it and its claims pass.
    fn verify(&self, token: &[u8]) -> Result<Map<String, Value>, Cow<'static, str>> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Cow::Owned(format!("the token's header does not parse: {e}")))?;
        let alg = header.alg;
        if !self.validation.algorithms.contains(&alg) {
            return Err(format!("algorithm {alg:?} is not allowed").into());
        }
        let fits = |key: &&jwt::Key| {
            key.key.family() == alg.family() && key.algorithm.is_none_or(|a| a == alg)
        };
        let mut candidates = self.keys.iter().filter(fits).peekable();
        if candidates.peek().is_none() {
            return Err(format!("no key for algorithm {alg:?}").into());
        }
        let mut last = Cow::Borrowed("no key matches the token's kid");
        for key in candidates {
            if let Some(kid) = &header.kid
                && key.kid.as_deref().is_some_and(|k| k != kid)
            {
                continue;
            }
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(error) => last = Cow::Owned(error.to_string()),
            }
        }
        Err(last)
    }
}

/// A claim's value as a header value: strings as they are, lists joined with commas, other
/// JSON as JSON.
pub fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(claim_text)
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}
