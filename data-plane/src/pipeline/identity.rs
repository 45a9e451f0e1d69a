//! The identity and traffic phases of the request pipeline: `jwt` and `apiKey` find who the
//! request is (and announce it upstream), `authorization` decides whether that identity may
//! pass, `rateLimit` counts it. Each failure ends the request with its own answer.

use http::{HeaderName, HeaderValue};

use super::{Head, Local, Plan, ProxyError};
use crate::table::{
    Consumers, Identity, X_CONSUMER, X_CONSUMER_GROUPS,
    identity::ApiKey,
    jwt::{self, Jwt, Refusal},
    rate_limit::{Key, RateLimit},
};

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Verifies the request's token; its claims and consumer become the request's identity.
pub(super) fn jwt(
    policy: &Jwt,
    head: &Head<'_>,
    consumers: &Consumers,
    identity: &mut Identity,
    plan: &mut Plan<'_>,
) -> Result<(), Local> {
    let verified = policy.verify(head.headers, head.query).map_err(|refusal| {
        Local::Error(match refusal {
            Refusal::Missing => ProxyError::Unauthorized {
                challenge: HeaderValue::from_static("Bearer"),
                reason: "no token".into(),
            },
            Refusal::Invalid(reason) => ProxyError::Unauthorized {
                challenge: HeaderValue::from_static("Bearer error=\"invalid_token\""),
                reason,
            },
            Refusal::Unavailable(reason) => ProxyError::AuthUnavailable { reason },
        })
    })?;
    let provider = verified.provider;
    for (claim, header) in provider.forward.iter() {
        if let Some(value) = verified
            .claims
            .get(&**claim)
            .and_then(jwt::claim_text)
            .and_then(|text| HeaderValue::from_str(&text).ok())
        {
            plan.request_extra.push((header.clone(), value));
        }
    }
    if let Some(claim) = &provider.consumer_claim
        && let Some(consumer) = verified
            .claims
            .get(&**claim)
            .and_then(|v| v.as_str())
            .and_then(|name| consumers.by_name(name))
    {
        identity.consumer = Some(consumer.clone());
    }
    identity.claims = Some(verified.claims);
    Ok(())
}

/// Looks the request's key up among the Consumers' keys.
pub(super) fn api_key(
    policy: &ApiKey,
    head: &Head<'_>,
    consumers: &Consumers,
    identity: &mut Identity,
) -> Result<(), Local> {
    let refused = |reason: &'static str| {
        Local::Error(ProxyError::Unauthorized {
            challenge: HeaderValue::from_static("ApiKey"),
            reason: reason.into(),
        })
    };
    let key = policy
        .find(head.headers, head.query)
        .ok_or_else(|| refused("no API key"))?;
    let consumer = consumers
        .by_key(&key)
        .ok_or_else(|| refused("an API key of no consumer"))?;
    identity.consumer = Some(consumer.clone());
    Ok(())
}

/// The consumer's name and groups, for the upstream request.
pub(super) fn announce(identity: &Identity, plan: &mut Plan<'_>) {
    if let Some(consumer) = &identity.consumer {
        if let Some(name) = &consumer.name_value {
            plan.request_extra.push((X_CONSUMER.clone(), name.clone()));
        }
        if let Some(groups) = &consumer.groups_value {
            plan.request_extra
                .push((X_CONSUMER_GROUPS.clone(), groups.clone()));
        }
    }
}

/// Counts the request against `policy`: 429 past a limit; `RateLimit` on the response either
/// way.
pub(super) fn rate_limit(
    policy: &RateLimit,
    (head, route): (&Head<'_>, &str),
    client: Option<std::net::IpAddr>,
    identity: &Identity,
    plan: &mut Plan<'_>,
) -> Result<(), Local> {
    let mut ip = [0u8; 16];
    let key: &[u8] = match &policy.key {
        Key::ClientIp => match client {
            Some(std::net::IpAddr::V4(v4)) => {
                ip[..4].copy_from_slice(&v4.octets());
                &ip[..4]
            }
            Some(std::net::IpAddr::V6(v6)) => {
                ip = v6.octets();
                &ip
            }
            None => b"",
        },
        Key::Consumer => identity
            .consumer
            .as_ref()
            .map_or(&b""[..], |c| c.name.as_bytes()),
        Key::Header(name) => head.headers.first(name).unwrap_or_default(),
        // One bucket per route, whichever routes share the policy.
        Key::Route => route.as_bytes(),
    };
    let verdict = policy.check(key);
    if !verdict.allowed {
        return Err(Local::Error(ProxyError::RateLimited {
            retry_after: verdict.retry_after,
            policy: policy.policy_header.clone(),
            limit: verdict.header,
        }));
    }
    plan.response_extra
        .push((RATELIMIT.clone(), verdict.header));
    Ok(())
}

/// The consumers of a rule whose policies need none: an empty set, without a count to take.
pub(super) fn no_consumers() -> &'static Consumers {
    static EMPTY: std::sync::LazyLock<Consumers> = std::sync::LazyLock::new(Consumers::default);
    &EMPTY
}
