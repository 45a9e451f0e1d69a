//! The `jwt` policy, compiled: each provider's keys parsed once, its checks set up once. A
//! token is verified against the provider's own keys only: the token's `jku`, `x5u` and `jwk`
//! headers are never looked at, `none` is not an algorithm here, and a key is used only for
//! the algorithms of its type (an RSA public key is never an HMAC secret).

use std::{
    borrow::Cow,
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use gateway_proto::{jwt, v1};
use http::HeaderName;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::identity::Source;
use crate::{
    jwks::{KeySet, Origin, RemoteKeys},
    side::SideTables,
    table::RequestHeaders,
};

/// Tokens longer than this are refused unread, unless the policy says otherwise.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Leeway on `exp` and `nbf` where a provider sets none.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 30;
/// How long a stale remote key set is still used while the identity provider fails, where a
/// provider sets no `keysGracePeriod`.
pub const DEFAULT_KEYS_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug)]
pub struct Jwt {
    providers: Box<[Provider]>,
    pub strip_token: bool,
    max_token_bytes: usize,
    verified: VerifiedTokens,
}

/// Tokens this policy verified, by their exact bytes: a client sends the same token with
/// every request, and its signature need not be checked again while the keys are the same
/// (the cache goes with the table, so a key change starts it afresh). Only verified tokens
/// enter, so a flood of forged ones cannot fill it; `exp` and `nbf` are checked on every hit.
#[derive(Debug)]
struct VerifiedTokens {
    shards: Box<[Mutex<HashMap<u64, Cached>>]>,
    hasher: RandomState,
}

#[derive(Debug)]
struct Cached {
    token: Box<[u8]>,
    provider: usize,
    /// The key set's generation it was verified with.
    generation: u64,
    claims: Arc<Map<String, Value>>,
    exp: u64,
    nbf: Option<u64>,
}

const CACHE_SHARDS: usize = 8;
/// Tokens kept per shard; a full shard starts over.
const CACHE_PER_SHARD: usize = 1024;

#[derive(Debug)]
pub struct Provider {
    pub name: Box<str>,
    keys: Box<[jwt::Key]>,
    /// Keys fetched from the identity provider instead (`jwksUri`, `oidcDiscovery`).
    remote: Option<Arc<RemoteKeys>>,
    grace: std::time::Duration,
    /// One per allowed algorithm: jsonwebtoken refuses a token outright when the list it is
    /// given mixes key types, so each token is checked against its own algorithm's.
    validations: Box<[(Algorithm, Validation)]>,
    leeway: u64,
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
    /// A token that could not be checked: its provider's keys were never obtained, or are
    /// stale past their grace period. The request may well be fine.
    Unavailable(Cow<'static, str>),
}

/// The keys a provider verifies with now.
enum Keys<'p> {
    Inline(&'p [jwt::Key]),
    Remote(Arc<KeySet>),
}

impl Keys<'_> {
    fn as_slice(&self) -> &[jwt::Key] {
        match self {
            Self::Inline(keys) => keys,
            Self::Remote(set) => &set.keys,
        }
    }

    fn generation(&self) -> u64 {
        match self {
            Self::Inline(_) => 0,
            Self::Remote(set) => set.generation,
        }
    }
}

/// Why one provider did not verify a token.
enum Failure {
    Invalid(Cow<'static, str>),
    /// No key of the set fits the token (an unknown kid, or a key type the set lacks).
    NoKey(Cow<'static, str>),
}

/// A verified token: its provider and its claims.
#[derive(Debug)]
pub struct Verified<'p> {
    pub provider: &'p Provider,
    pub claims: Arc<Map<String, Value>>,
}

impl Jwt {
    /// The policy, its remote key sets taken from `side` (their fetching starts now).
    pub fn compile(policy: &v1::JwtPolicy, side: &SideTables) -> Self {
        Self {
            providers: policy
                .providers
                .iter()
                .map(|p| Provider::compile(p, side))
                .collect(),
            strip_token: policy.strip_token,
            max_token_bytes: policy
                .max_token_bytes
                .map_or(DEFAULT_MAX_TOKEN_BYTES, |n| n as usize),
            verified: VerifiedTokens {
                shards: (0..CACHE_SHARDS).map(|_| Mutex::default()).collect(),
                hasher: RandomState::new(),
            },
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
        let mut unavailable = None;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (index, provider) in self.providers.iter().enumerate() {
            let Some(token) = provider.sources.iter().find_map(|s| s.find(headers, query)) else {
                continue;
            };
            if token.len() > self.max_token_bytes {
                refusal = Refusal::Invalid("the token is over the size limit".into());
                continue;
            }
            let keys = match provider.keys() {
                Ok(keys) => keys,
                // Only a token that could be good waits for keys: one that is not even a JWT
                // is refused as it would be with keys at hand.
                Err(reason) if jsonwebtoken::decode_header(&*token).is_ok() => {
                    unavailable = Some(reason);
                    continue;
                }
                Err(_) => {
                    refusal = Refusal::Invalid("the token's header does not parse".into());
                    continue;
                }
            };
            let hash = self.verified.hasher.hash_one(&*token);
            let shard = &self.verified.shards[(hash as usize) % CACHE_SHARDS];
            if let Some(cached) = lock(shard).get(&hash)
                && cached.provider == index
                && cached.generation == keys.generation()
                && *cached.token == *token
            {
                let leeway = provider.leeway;
                if now > cached.exp.saturating_add(leeway) {
                    refusal = Refusal::Invalid("the token has expired".into());
                    continue;
                }
                if cached
                    .nbf
                    .is_some_and(|nbf| nbf > now.saturating_add(leeway))
                {
                    refusal = Refusal::Invalid("the token is not valid yet".into());
                    continue;
                }
                return Ok(Verified {
                    provider,
                    claims: cached.claims.clone(),
                });
            }
            match provider.verify(&token, keys.as_slice()) {
                Ok(claims) => {
                    let claims = Arc::new(claims);
                    // `exp` is required, so a verified token has one.
                    if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
                        let mut shard = lock(shard);
                        if shard.len() >= CACHE_PER_SHARD {
                            shard.clear();
                        }
                        shard.insert(
                            hash,
                            Cached {
                                token: token.as_ref().into(),
                                provider: index,
                                generation: keys.generation(),
                                claims: claims.clone(),
                                exp,
                                nbf: claims.get("nbf").and_then(Value::as_u64),
                            },
                        );
                    }
                    return Ok(Verified { provider, claims });
                }
                Err(Failure::NoKey(reason)) => {
                    // The set may have rotated since it was fetched.
                    if let Some(remote) = &provider.remote {
                        remote.refresh_for_kid();
                    }
                    refusal = Refusal::Invalid(reason);
                }
                Err(Failure::Invalid(reason)) => refusal = Refusal::Invalid(reason),
            }
        }
        if let Some(reason) = unavailable {
            return Err(Refusal::Unavailable(reason));
        }
        Err(refusal)
    }
}

impl Provider {
    fn compile(spec: &v1::JwtProvider, side: &SideTables) -> Self {
        let algorithms: Vec<Algorithm> = spec
            .algorithms
            .iter()
            .filter_map(|a| jwt::algorithm(a))
            .collect();
        let mut validation = Validation::new(Algorithm::HS256);
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
        let leeway = validation.leeway;
        let validations = algorithms
            .into_iter()
            .map(|algorithm| {
                let mut validation = validation.clone();
                validation.algorithms = vec![algorithm];
                (algorithm, validation)
            })
            .collect();
        let mut sources: Vec<Source> = spec.token_from.iter().filter_map(Source::compile).collect();
        if sources.is_empty() {
            sources.push(Source::bearer());
        }
        Self {
            name: spec.name.as_str().into(),
            // Validation refused keys that do not parse.
            keys: jwt::inline_keys(spec).unwrap_or_default().into(),
            remote: Origin::of(spec).map(|origin| side.key_set(origin)),
            grace: spec
                .keys_grace_period
                .as_ref()
                .and_then(gateway_proto::duration::from_proto)
                .unwrap_or(DEFAULT_KEYS_GRACE),
            validations,
            leeway,
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

    /// The remote key set, for keys from a URL.
    pub fn remote(&self) -> Option<&Arc<RemoteKeys>> {
        self.remote.as_ref()
    }

    /// The keys to verify with now: inline, or the remote set unless it was never obtained
    /// or is stale past the grace period.
    fn keys(&self) -> Result<Keys<'_>, Cow<'static, str>> {
        let Some(remote) = &self.remote else {
            return Ok(Keys::Inline(&self.keys));
        };
        let Some(set) = remote.current() else {
            return Err("the identity provider's keys were never obtained".into());
        };
        let usable_until = set.stale_at.checked_add(self.grace);
        if usable_until.is_some_and(|until| Instant::now() > until) {
            return Err("the identity provider's keys are stale past the grace period".into());
        }
        Ok(Keys::Remote(set))
    }

    /// The token's claims when one of `keys` verifies it and its claims pass.
    fn verify(&self, token: &[u8], keys: &[jwt::Key]) -> Result<Map<String, Value>, Failure> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            Failure::Invalid(format!("the token's header does not parse: {e}").into())
        })?;
        let alg = header.alg;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == alg) else {
            return Err(Failure::Invalid(
                format!("algorithm {alg:?} is not allowed").into(),
            ));
        };
        let fits = |key: &&jwt::Key| {
            key.key.family() == alg.family()
                && key.algorithm.is_none_or(|a| a == alg)
                && header
                    .kid
                    .as_deref()
                    .is_none_or(|kid| key.kid.as_deref().is_none_or(|k| k == kid))
        };
        let mut last = None;
        for key in keys.iter().filter(fits) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(error) => last = Some(error.to_string()),
            }
        }
        Err(match last {
            Some(reason) => Failure::Invalid(reason.into()),
            None => Failure::NoKey(
                format!("no key for algorithm {alg:?} and kid {:?}", header.kid).into(),
            ),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
