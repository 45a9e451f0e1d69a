//! An Upstream's resilience settings on their own: the load balancer, health checks and the
//! circuit breaker.

use super::{At, check_duration};
use crate::{duration, names, v1};

/// The shortest active health-check interval.
pub(super) const MIN_CHECK_INTERVAL_MS: u64 = 100;

pub(super) fn check_resilience(at: &mut At<'_>, spec: &v1::UpstreamSpec) {
    if let Some(balancer) = &spec.load_balancer {
        check_balancer(at, balancer);
    }
    if let Some(health) = &spec.health_check {
        if let Some(active) = &health.active {
            check_active(at, active);
        }
        if let Some(passive) = &health.passive {
            check_passive(at, passive);
        }
    }
    if let Some(breaker) = &spec.circuit_breaker {
        for (value, field) in [
            (breaker.max_connections, "maxConnections"),
            (breaker.max_pending_requests, "maxPendingRequests"),
            (breaker.max_requests, "maxRequests"),
        ] {
            if value == Some(0) {
                at.error(
                    &format!("spec.circuitBreaker.{field}"),
                    "must be above 0 (leave it out for no limit)".into(),
                );
            }
        }
    }
}

fn check_balancer(at: &mut At<'_>, balancer: &v1::LoadBalancer) {
    use v1::load_balancer::Type;
    let Ok(kind) = Type::try_from(balancer.r#type) else {
        at.error(
            "spec.loadBalancer.type",
            "is not RoundRobin, LeastRequest, Random or ConsistentHash".into(),
        );
        return;
    };
    let keys = balancer.hash_on.as_ref().map_or(0, |on| {
        usize::from(!on.header.is_empty())
            + usize::from(!on.cookie.is_empty())
            + usize::from(on.source_ip)
    });
    match (kind, keys) {
        (Type::ConsistentHash, 1) => {}
        (Type::ConsistentHash, _) => at.error(
            "spec.loadBalancer.hashOn",
            "must set exactly one of header, cookie, sourceIP".into(),
        ),
        (_, 0) => {}
        (_, _) => at.error(
            "spec.loadBalancer.hashOn",
            "applies to type: ConsistentHash only".into(),
        ),
    }
    if let Some(on) = &balancer.hash_on {
        if !on.header.is_empty()
            && let Err(reason) = names::check_header_name(&on.header)
        {
            at.error("spec.loadBalancer.hashOn.header", reason);
        }
        if !on.cookie.is_empty()
            && let Err(reason) = names::check_header_name(&on.cookie)
        {
            at.error("spec.loadBalancer.hashOn.cookie", reason);
        }
    }
}

fn check_active(at: &mut At<'_>, active: &v1::ActiveHealthCheck) {
    if !active.path.starts_with('/') || !active.path.bytes().all(|b| b.is_ascii_graphic()) {
        at.error(
            "spec.healthCheck.active.path",
            format!("{:?} is not a path (it starts with \"/\")", active.path),
        );
    }
    check_duration(
        at,
        "spec.healthCheck.active.interval",
        active.interval.as_ref(),
    );
    check_duration(
        at,
        "spec.healthCheck.active.timeout",
        active.timeout.as_ref(),
    );
    let interval = active.interval.as_ref().and_then(duration::from_proto);
    let timeout = active.timeout.as_ref().and_then(duration::from_proto);
    if interval.is_some_and(|i| i.as_millis() < u128::from(MIN_CHECK_INTERVAL_MS)) {
        at.error(
            "spec.healthCheck.active.interval",
            format!("must be at least {MIN_CHECK_INTERVAL_MS}ms"),
        );
    }
    if let (Some(interval), Some(timeout)) = (interval, timeout)
        && timeout > interval
    {
        at.error(
            "spec.healthCheck.active.timeout",
            "must not be longer than the interval".into(),
        );
    }
    for (value, field) in [
        (active.healthy_threshold, "healthyThreshold"),
        (active.unhealthy_threshold, "unhealthyThreshold"),
    ] {
        if value.is_some_and(|n| n == 0 || n > 100) {
            at.error(
                &format!("spec.healthCheck.active.{field}"),
                "must be between 1 and 100".into(),
            );
        }
    }
    for (i, status) in active.expected_statuses.iter().enumerate() {
        if !(100..=599).contains(status) {
            at.error(
                &format!("spec.healthCheck.active.expectedStatuses[{i}]"),
                format!("{status} is not an HTTP status"),
            );
        }
    }
}

fn check_passive(at: &mut At<'_>, passive: &v1::PassiveHealthCheck) {
    if passive
        .consecutive_errors
        .is_some_and(|n| n == 0 || n > 1000)
    {
        at.error(
            "spec.healthCheck.passive.consecutiveErrors",
            "must be between 1 and 1000".into(),
        );
    }
    check_duration(
        at,
        "spec.healthCheck.passive.baseEjectionTime",
        passive.base_ejection_time.as_ref(),
    );
    if passive
        .max_ejection_percent
        .is_some_and(|n| n == 0 || n > 100)
    {
        at.error(
            "spec.healthCheck.passive.maxEjectionPercent",
            "must be between 1 and 100".into(),
        );
    }
}
