//! One route rule, compiled: where its requests go (backends split by weight, the position in
//! the split kept in the side tables), its filters and its policies.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use gateway_proto::{
    v1::{self, path_match},
    validate::normalized_path,
};

use super::{
    filter::Filters,
    hash::FxHashMap,
    policy::{Policy, RulePolicies},
    upstream::{self, Upstream},
};
use crate::{side::SideTables, transcode::Transcoder};

/// One route rule: what the pipeline needs once the router has chosen it.
#[derive(Debug)]
pub struct Rule {
    route: Arc<str>,
    /// Its position in the route's `rules`.
    index: usize,
    backends: Backends,
    filters: Filters,
    policies: RulePolicies,
    /// Whether the route wants the normalised path (the default) or the one the client sent.
    normalize: bool,
    /// The rule's PathPrefix values, longest first (for ReplacePrefixMatch).
    prefixes: Box<[Box<str>]>,
    /// No filters and no policies: the pipeline has nothing to run.
    plain: bool,
    timeouts: Timeouts,
    retry: Option<Retry>,
    /// A RequestMirror filter's shadow upstream, and the share of requests copied to it.
    mirror: Option<(Arc<Upstream>, u32)>,
    /// A GrpcTranscode filter: REST/JSON requests become gRPC calls.
    transcoder: Option<Arc<Transcoder>>,
}

/// A rule's `retry`, resolved.
#[derive(Clone, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
    pub codes: Box<[u16]>,
    pub non_idempotent: bool,
}

impl Retry {
    fn compile(retry: &v1::RouteRetry) -> Self {
        Self {
            attempts: retry.attempts,
            backoff: retry
                .backoff
                .as_ref()
                .and_then(gateway_proto::duration::from_proto)
                .unwrap_or(Duration::from_millis(25)),
            codes: retry
                .codes
                .iter()
                .filter_map(|&c| u16::try_from(c).ok())
                .collect(),
            non_idempotent: retry.non_idempotent,
        }
    }

    /// The wait before a retry: the backoff, ±50 %.
    pub fn wait(&self) -> Duration {
        self.backoff.mul_f64(0.5 + fastrand::f64())
    }
}

/// A rule's `timeouts`: how long a request, and each try with a backend, may take to the end
/// of the response.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeouts {
    pub request: Option<Duration>,
    pub backend_request: Option<Duration>,
}

impl Timeouts {
    fn compile(timeouts: Option<&v1::RouteTimeouts>) -> Self {
        let Some(timeouts) = timeouts else {
            return Self::default();
        };
        let duration =
            |d: Option<&prost_types::Duration>| d.and_then(gateway_proto::duration::from_proto);
        Self {
            request: duration(timeouts.request.as_ref()),
            backend_request: duration(timeouts.backend_request.as_ref()),
        }
    }

    /// When the response must have ended, for a request that arrived at `arrived` and whose
    /// try with a backend starts at `try_start`; `None` when the rule sets no timeout.
    #[inline]
    pub fn deadline(&self, arrived: Instant, try_start: Instant) -> Option<Instant> {
        let request = self.request.map(|t| crate::limits::deadline(arrived, t));
        let backend = self
            .backend_request
            .map(|t| crate::limits::deadline(try_start, t));
        match (request, backend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug)]
enum Backends {
    /// A rule that answers itself (a redirect).
    None,
    One(Arc<Upstream>),
    /// Upstreams split by weight, in smooth weighted round-robin order.
    Weighted {
        upstreams: Box<[Arc<Upstream>]>,
        sequence: Box<[u32]>,
        /// In the side tables, so a swap does not restart the split.
        next: Arc<AtomicUsize>,
    },
}

/// What a rule is compiled from besides its spec.
pub(super) struct Context<'a> {
    /// ProtoSets by name (empty for a delta's routes, which never have a GrpcTranscode filter:
    /// the incremental check leaves them to the whole one).
    pub(super) proto_sets: &'a FxHashMap<&'a str, &'a v1::ProtoSetSpec>,
    pub(super) upstreams: &'a FxHashMap<Arc<str>, Arc<Upstream>>,
    pub(super) policies: &'a FxHashMap<Arc<str>, Arc<Policy>>,
    /// Global policies, in name order.
    pub(super) global: &'a [Arc<Policy>],
    pub(super) side: &'a SideTables,
}

// === impl Rule ===

impl Rule {
    /// Compiles a validated rule: every reference resolves, or validation refused it.
    pub(super) fn compile(
        route: &Arc<str>,
        spec: &v1::RouteSpec,
        index: usize,
        rule: &v1::RouteRule,
        cx: &Context<'_>,
    ) -> Self {
        let mut chosen = Vec::with_capacity(rule.backend_refs.len());
        let mut weights = Vec::with_capacity(rule.backend_refs.len());
        for backend in &rule.backend_refs {
            if let Some(upstream) = cx.upstreams.get(backend.name.as_str()) {
                chosen.push(upstream.clone());
                weights.push(backend.weight.unwrap_or(1));
            }
        }
        let sequence = upstream::smooth_wrr(&weights);
        let backends = match sequence.first() {
            None => Backends::None,
            Some(&first) if sequence.iter().all(|&i| i == first) => {
                Backends::One(chosen[first as usize].clone())
            }
            Some(_) => Backends::Weighted {
                upstreams: chosen.into(),
                sequence: sequence.into(),
                next: cx.side.split(route, index),
            },
        };

        let mut policies: Vec<Arc<Policy>> = cx.global.to_vec();
        for name in spec.policies.iter().chain(&rule.policies) {
            if let Some(policy) = cx.policies.get(name.as_str()) {
                policies.push(policy.clone());
            }
        }
        let policies = RulePolicies::new(policies);
        let filters = Filters::compile(&rule.filters);

        let mut prefixes: Vec<Box<str>> = if rule.matches.is_empty() {
            vec!["/".into()]
        } else {
            rule.matches
                .iter()
                .filter_map(|m| match &m.path {
                    None => Some("/".into()),
                    Some(p) if p.r#type == path_match::Type::PathPrefix as i32 => {
                        let prefix = normalized_path(path_match::Type::PathPrefix, &p.value);
                        Some(if prefix.is_empty() { "/" } else { prefix }.into())
                    }
                    Some(_) => None,
                })
                .collect()
        };
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));

        Self {
            route: route.clone(),
            index,
            backends,
            plain: filters.is_empty() && policies.is_empty(),
            filters,
            policies,
            normalize: spec.normalize_path.unwrap_or(true),
            prefixes: prefixes.into(),
            timeouts: Timeouts::compile(rule.timeouts.as_ref()),
            retry: rule.retry.as_ref().map(Retry::compile),
            mirror: rule
                .filters
                .iter()
                .filter_map(|f| f.request_mirror.as_ref())
                .find_map(|mirror| {
                    let name = mirror.backend_ref.as_ref()?.name.as_str();
                    let upstream = cx.upstreams.get(name)?.clone();
                    Some((upstream, mirror.percent.unwrap_or(100)))
                }),
            transcoder: rule
                .filters
                .iter()
                .filter_map(|f| f.grpc_transcode.as_ref())
                .find_map(|filter| {
                    let proto_set = cx.proto_sets.get(filter.proto_set.as_str())?;
                    Transcoder::compile(filter, proto_set).map(Arc::new)
                }),
        }
    }

    /// The rule's transcoder, if it has a GrpcTranscode filter.
    #[inline]
    pub fn transcoder(&self) -> Option<&Arc<Transcoder>> {
        self.transcoder.as_ref()
    }

    /// The rule's timeouts.
    #[inline]
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The shadow upstream of this request, when the rule mirrors and the request is among
    /// the share it copies.
    #[inline]
    pub fn mirror(&self) -> Option<&Arc<Upstream>> {
        let (upstream, percent) = self.mirror.as_ref()?;
        (*percent >= 100 || fastrand::u32(..100) < *percent).then_some(upstream)
    }

    /// The rule's retries, if it retries.
    #[inline]
    pub fn retry(&self) -> Option<&Retry> {
        self.retry.as_ref()
    }

    /// Its position in its route's rules.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The name of the route this rule belongs to.
    pub fn route(&self) -> &Arc<str> {
        &self.route
    }

    /// The upstream for the next request, by the rule's backend weights; `None` for a rule
    /// that answers itself.
    #[inline]
    pub fn upstream(&self) -> Option<&Arc<Upstream>> {
        match &self.backends {
            Backends::None => None,
            Backends::One(upstream) => Some(upstream),
            Backends::Weighted {
                upstreams,
                sequence,
                next,
            } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % sequence.len();
                upstreams.get(sequence[i] as usize)
            }
        }
    }

    /// Every upstream the rule may send to, without taking a turn of the split.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        match &self.backends {
            Backends::None => &[],
            Backends::One(upstream) => std::slice::from_ref(upstream),
            Backends::Weighted { upstreams, .. } => upstreams,
        }
    }

    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    pub fn policies(&self) -> &RulePolicies {
        &self.policies
    }

    /// Whether the rule has neither filters nor policies.
    #[inline]
    pub fn is_plain(&self) -> bool {
        self.plain
    }

    #[inline]
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The longest of the rule's path prefixes that `path` is under (segment-wise).
    pub fn matched_prefix(&self, path: &str) -> &str {
        self.prefixes
            .iter()
            .find(|p| {
                p.as_ref() == "/"
                    || path
                        .strip_prefix(&***p)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .map_or("/", |p| p)
    }
}
