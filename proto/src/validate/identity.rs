//! Checks of the identity and traffic policies (`jwt`, `apiKey`, `authorization`,
//! `rateLimit`) and of `Consumer` resources.

use std::collections::{HashMap, HashSet};

use super::{At, Report, check_duration};
use crate::{api_key, duration, jwt, names, v1};

/// The most a provider's `clockSkew` may be.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;
/// The largest `maxTokenBytes` (a token travels in the request head).
pub const MAX_TOKEN_BYTES: u32 = 64 * 1024;
/// The longest `keysGracePeriod`.
pub const MAX_KEYS_GRACE_SECS: i64 = 24 * 3600;
/// Limits per `rateLimit` policy.
pub const MAX_LIMITS: usize = 4;

pub(super) fn check_jwt(at: &mut At<'_>, policy: &v1::JwtPolicy) {
    if policy.providers.is_empty() {
        at.error(
            "spec.jwt.providers",
            "must list at least one provider".into(),
        );
    }
    if policy
        .max_token_bytes
        .is_some_and(|n| n == 0 || n > MAX_TOKEN_BYTES)
    {
        at.error(
            "spec.jwt.maxTokenBytes",
            format!("must be between 1 and {MAX_TOKEN_BYTES}"),
        );
    }
    let mut names = HashSet::new();
    for (i, provider) in policy.providers.iter().enumerate() {
        let field = format!("spec.jwt.providers[{i}]");
        if provider.name.is_empty() {
            at.error(&format!("{field}.name"), "must be set".into());
        } else if !names.insert(provider.name.as_str()) {
            at.error(
                &format!("{field}.name"),
                format!("provider {:?} is listed twice", provider.name),
            );
        }
        check_provider(at, &field, provider);
    }
}

fn check_provider(at: &mut At<'_>, field: &str, provider: &v1::JwtProvider) {
    let sources = [
        !provider.jwks.is_empty(),
        !provider.key_pem.is_empty(),
        !provider.jwks_uri.is_empty(),
        provider.oidc_discovery,
    ];
    match sources.iter().filter(|set| **set).count() {
        0 => at.error(
            field,
            "must set its keys: jwks, keyPem, jwksUri or oidcDiscovery".into(),
        ),
        1 => {}
        _ => at.error(
            field,
            "sets more than one of jwks, keyPem, jwksUri and oidcDiscovery".into(),
        ),
    }
    if !provider.jwks_uri.is_empty()
        && let Err(reason) = check_url(&provider.jwks_uri)
    {
        at.error(&format!("{field}.jwksUri"), reason);
    }
    if provider.oidc_discovery {
        if provider.issuer.is_empty() {
            at.error(
                &format!("{field}.issuer"),
                "must be set with oidcDiscovery (its /.well-known/openid-configuration is read)"
                    .into(),
            );
        } else if let Err(reason) = check_url(&provider.issuer) {
            at.error(&format!("{field}.issuer"), reason);
        }
    }
    if let Some(grace) = &provider.keys_grace_period {
        let field = format!("{field}.keysGracePeriod");
        check_duration(at, &field, Some(grace));
        if grace.seconds > MAX_KEYS_GRACE_SECS {
            at.error(&field, format!("must be at most {MAX_KEYS_GRACE_SECS}s"));
        }
    }
    let keys = match jwt::inline_keys(provider) {
        Ok(keys) => keys,
        Err(reason) => {
            let which = if provider.jwks.is_empty() {
                "keyPem"
            } else {
                "jwks"
            };
            at.error(&format!("{field}.{which}"), reason);
            Vec::new()
        }
    };
    if provider.algorithms.is_empty() {
        at.error(
            &format!("{field}.algorithms"),
            "must list the algorithms tokens may be signed with".into(),
        );
    }
    for (i, name) in provider.algorithms.iter().enumerate() {
        let at_field = format!("{field}.algorithms[{i}]");
        match jwt::algorithm(name) {
            None if name.eq_ignore_ascii_case("none") => at.error(
                &at_field,
                "\"none\" means unsigned tokens: never accepted".into(),
            ),
            None => at.error(
                &at_field,
                format!("{name:?} is not one of {}", jwt::ALGORITHMS.join(", ")),
            ),
            // An algorithm no key can verify would refuse every token that uses it.
            Some(algorithm)
                if !keys.is_empty()
                    && !keys.iter().any(|k| {
                        k.key.family() == algorithm.family()
                            && k.algorithm.is_none_or(|a| a == algorithm)
                    }) =>
            {
                at.error(&at_field, format!("no key of the provider is for {name}"));
            }
            Some(_) => {}
        }
    }
    if let Some(skew) = &provider.clock_skew {
        check_duration(at, &format!("{field}.clockSkew"), Some(skew));
        if skew.seconds > MAX_CLOCK_SKEW_SECS
            || (skew.seconds == MAX_CLOCK_SKEW_SECS && skew.nanos > 0)
        {
            at.error(
                &format!("{field}.clockSkew"),
                format!("must be at most {MAX_CLOCK_SKEW_SECS}s"),
            );
        }
    }
    for (i, forward) in provider.forward_claims.iter().enumerate() {
        let at_field = format!("{field}.forwardClaims[{i}]");
        if forward.claim.is_empty() {
            at.error(&format!("{at_field}.claim"), "must be set".into());
        }
        if let Err(reason) = names::check_header_name(&forward.header) {
            at.error(&format!("{at_field}.header"), reason);
        }
    }
    check_sources(at, &format!("{field}.tokenFrom"), &provider.token_from);
}

/// An `http://` or `https://` URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "{url:?} must be an http:// or https:// URL with a host"
        ));
    }
    Ok(())
}

/// Each source names exactly one of a header (with an optional prefix), a cookie or a query
/// parameter.
fn check_sources(at: &mut At<'_>, field: &str, sources: &[v1::CredentialSource]) {
    for (i, source) in sources.iter().enumerate() {
        let at_field = format!("{field}[{i}]");
        let set = [
            !source.header.is_empty(),
            !source.cookie.is_empty(),
            !source.query.is_empty(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            at.error(
                &at_field,
                "must set exactly one of header, cookie, query".into(),
            );
            continue;
        }
        if !source.header.is_empty() {
            if let Err(reason) = names::check_header_name(&source.header) {
                at.error(&format!("{at_field}.header"), reason);
            }
        } else if !source.prefix.is_empty() {
            at.error(
                &format!("{at_field}.prefix"),
                "applies to a header only".into(),
            );
        }
    }
}

pub(super) fn check_api_key(at: &mut At<'_>, policy: &v1::ApiKeyPolicy) {
    if policy.from.is_empty() {
        at.error(
            "spec.apiKey.from",
            "must name where the key is read from (a header or query parameter)".into(),
        );
    }
    check_sources(at, "spec.apiKey.from", &policy.from);
}

pub(super) fn check_authorization(at: &mut At<'_>, policy: &v1::AuthorizationPolicy) {
    if policy.rules.is_empty() {
        at.error(
            "spec.authorization.rules",
            "must list at least one rule".into(),
        );
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let field = format!("spec.authorization.rules[{i}]");
        if rule.allow_groups.is_empty()
            && rule.allow_consumers.is_empty()
            && rule.require_claims.is_empty()
        {
            at.error(
                &field,
                "must set allowGroups, allowConsumers or requireClaims".into(),
            );
        }
        for (c, claim) in rule.require_claims.iter().enumerate() {
            let at_field = format!("{field}.requireClaims[{c}]");
            if claim.claim.is_empty() {
                at.error(&format!("{at_field}.claim"), "must be set".into());
            }
            if claim.values.is_empty() {
                at.error(&format!("{at_field}.values"), "must list values".into());
            }
        }
    }
}

pub(super) fn check_rate_limit(at: &mut At<'_>, policy: &v1::RateLimitPolicy) {
    use v1::rate_limit_policy::{Key, Scope};

    if policy.limits.is_empty() || policy.limits.len() > MAX_LIMITS {
        at.error(
            "spec.rateLimit.limits",
            format!("must list 1 to {MAX_LIMITS} limits"),
        );
    }
    for (i, limit) in policy.limits.iter().enumerate() {
        let field = format!("spec.rateLimit.limits[{i}]");
        if limit.requests == 0 {
            at.error(&format!("{field}.requests"), "must be above 0".into());
        }
        match limit.per.as_ref().map(duration::check_proto_duration) {
            None => at.error(&format!("{field}.per"), "must be set".into()),
            Some(Err(reason)) => at.error(&format!("{field}.per"), reason),
            Some(Ok(())) => {
                if limit
                    .per
                    .as_ref()
                    .and_then(duration::from_proto)
                    .is_none_or(|d| d.is_zero())
                {
                    at.error(&format!("{field}.per"), "must be above 0".into());
                }
            }
        }
        if limit.requests.saturating_add(limit.burst) > u64::from(u32::MAX) {
            at.error(&field, "requests + burst is too large".into());
        }
    }
    match Key::try_from(policy.key) {
        Ok(Key::Header) if policy.header.is_empty() => at.error(
            "spec.rateLimit.header",
            "must name the header to count by (key: Header)".into(),
        ),
        Ok(Key::Header) => {
            if let Err(reason) = names::check_header_name(&policy.header) {
                at.error("spec.rateLimit.header", reason);
            }
        }
        Ok(_) if !policy.header.is_empty() => at.error(
            "spec.rateLimit.header",
            "applies to key: Header only".into(),
        ),
        Ok(_) => {}
        Err(_) => at.error("spec.rateLimit.key", "is not a known key".into()),
    }
    match Scope::try_from(policy.scope) {
        Ok(Scope::Local | Scope::Cluster) => {}
        Err(_) => at.error("spec.rateLimit.scope", "is not a known scope".into()),
    }
    if policy.max_keys == Some(0) {
        at.error("spec.rateLimit.maxKeys", "must be above 0".into());
    }
}

pub(super) fn check_consumer(at: &mut At<'_>, spec: &v1::ConsumerSpec) {
    for (i, group) in spec.groups.iter().enumerate() {
        if let Err(reason) = names::check_resource_name(group) {
            at.error(&format!("spec.groups[{i}]"), reason);
        }
    }
    for (i, key) in spec.api_keys.iter().enumerate() {
        let field = format!("spec.apiKeys[{i}]");
        match (key.key.is_empty(), key.key_hash.is_empty()) {
            (true, true) => at.error(&field, "must set key (or keyHash)".into()),
            (false, false) => at.error(&field, "sets both key and keyHash".into()),
            (false, true) if key.key.len() < 8 => {
                at.error(
                    &format!("{field}.key"),
                    "must be at least 8 characters".into(),
                );
            }
            (true, false) if !api_key::is_hash(&key.key_hash) => at.error(
                &format!("{field}.keyHash"),
                "must be a SHA-256 in lower-case hex (64 characters)".into(),
            ),
            _ => {}
        }
    }
}

/// An API key belongs to one consumer: a key of two would make the request's identity a guess.
pub(super) fn check_consumer_keys(report: &mut Report, resources: &[v1::Resource]) {
    let mut owners: HashMap<String, &str> = HashMap::new();
    for resource in resources {
        let Some(v1::resource::Spec::Consumer(spec)) = &resource.spec else {
            continue;
        };
        let mut at = report.at(resource);
        for (i, key) in spec.api_keys.iter().enumerate() {
            let hash = if key.key.is_empty() {
                key.key_hash.clone()
            } else {
                api_key::hash(key.key.as_bytes())
            };
            match owners.get(&hash) {
                Some(owner) => at.error(
                    &format!("spec.apiKeys[{i}]"),
                    format!("is already a key of consumer {owner:?}"),
                ),
                None => {
                    owners.insert(hash, resource.name.as_str());
                }
            }
        }
    }
}

/// The largest compiled block pattern: a pattern runs on every request of its routes.
const MAX_PATTERN_BYTES: usize = 64 * 1024;

/// A block rule's pattern, compiled for searching (not anchored).
pub fn block_pattern(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_BYTES)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))
}

pub(super) fn check_request_validation(at: &mut At<'_>, policy: &v1::RequestValidationPolicy) {
    use v1::block_rule::In;

    if !policy.json_schema.is_empty()
        && let Err(reason) = crate::json_schema::compile(&policy.json_schema)
    {
        at.error("spec.requestValidation.jsonSchema", reason);
    }
    if policy.json_schema.is_empty() && policy.block.is_empty() && policy.query.is_empty() {
        at.error(
            "spec.requestValidation",
            "must set jsonSchema, query parameters or block rules".into(),
        );
    }
    let mut names = HashSet::new();
    for (i, parameter) in policy.query.iter().enumerate() {
        let field = format!("spec.requestValidation.query[{i}]");
        if parameter.name.is_empty() {
            at.error(&format!("{field}.name"), "must be set".into());
        } else if !names.insert(parameter.name.as_str()) {
            at.error(
                &format!("{field}.name"),
                format!("{:?} is listed twice", parameter.name),
            );
        }
        if v1::query_parameter::Type::try_from(parameter.r#type).is_err() {
            at.error(
                &format!("{field}.type"),
                "is not String, Integer, Number or Boolean".into(),
            );
        }
    }
    for (i, rule) in policy.block.iter().enumerate() {
        let field = format!("spec.requestValidation.block[{i}]");
        if let Err(reason) = block_pattern(&rule.pattern) {
            at.error(&format!("{field}.pattern"), reason);
        }
        match In::try_from(rule.r#in) {
            Ok(In::Header) => {
                if let Err(reason) = names::check_header_name(&rule.name) {
                    at.error(&format!("{field}.name"), reason);
                }
            }
            Ok(In::Path) if !rule.name.is_empty() => at.error(
                &format!("{field}.name"),
                "applies to Query and Header only".into(),
            ),
            Ok(_) => {}
            Err(_) => at.error(
                &format!("{field}.in"),
                "is not Path, Query or Header".into(),
            ),
        }
    }
}
