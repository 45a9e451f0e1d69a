//! Compiles a snapshot's new regular expressions on every core before validation needs them.
//!
//! One costs ~0.2 ms, so the first snapshot of a config with thousands of them would spend most
//! of its compile time there, one after the other. Later snapshots find them in the cache and
//! skip this.

use std::{num::NonZeroUsize, thread};

use gateway_proto::{
    RegexCache,
    v1::{self, header_match, path_match, query_param_match, resource::Spec},
};

/// Below this many new patterns, threads cost more than they save.
const MIN_PARALLEL: usize = 64;

/// Fills `cache` with the patterns of `resources` it does not hold yet. Invalid patterns are
/// left for validation to report.
pub(super) fn warm_regexes(resources: &[v1::Resource], cache: &RegexCache) {
    let mut missing: Vec<&str> = patterns(resources)
        .filter(|pattern| !cache.contains(pattern))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let threads = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    if missing.len() < MIN_PARALLEL || threads < 2 {
        return;
    }
    let per_thread = missing.len().div_ceil(threads);
    thread::scope(|scope| {
        for chunk in missing.chunks(per_thread) {
            scope.spawn(move || {
                for pattern in chunk {
                    // An error is reported by validation, with its resource and field.
                    let _ = cache.get_or_compile(pattern);
                }
            });
        }
    });
}

/// Every regular expression of the routes: paths, headers and query parameters.
fn patterns(resources: &[v1::Resource]) -> impl Iterator<Item = &str> {
    resources
        .iter()
        .filter_map(|r| match &r.spec {
            Some(Spec::Route(route)) => Some(route),
            _ => None,
        })
        .flat_map(|route| &route.rules)
        .flat_map(|rule| &rule.matches)
        .flat_map(|m| {
            let path = m
                .path
                .as_ref()
                .filter(|p| p.r#type == path_match::Type::RegularExpression as i32)
                .map(|p| p.value.as_str());
            let headers = m
                .headers
                .iter()
                .filter(|h| h.r#type == header_match::Type::RegularExpression as i32)
                .map(|h| h.value.as_str());
            let query = m
                .query_params
                .iter()
                .filter(|q| q.r#type == query_param_match::Type::RegularExpression as i32)
                .map(|q| q.value.as_str());
            path.into_iter().chain(headers).chain(query)
        })
}

#[cfg(test)]
mod tests {
    use gateway_proto::document::parse_documents;

    use super::*;

    #[test]
    fn compiles_every_new_pattern_once() {
        let routes: String = (0..100)
            .map(|i| {
                format!(
                    "kind: Route\nname: r{i}\nspec:\n  rules:\n    - matches:\n        - path: {{ type: RegularExpression, value: '/p{i}/[0-9]+' }}\n          headers: [{{ name: x-a, type: RegularExpression, value: 'h{i}.*' }}]\n          queryParams: [{{ name: q, type: RegularExpression, value: 'q{i}|(' }}]\n      backendRefs: [{{ name: u }}]\n---\n"
                )
            })
            .collect();
        let resources = parse_documents(&routes).unwrap();
        let cache = RegexCache::default();
        warm_regexes(&resources, &cache);
        // 100 paths and 100 headers; the 100 broken query patterns are left for validation.
        assert_eq!(cache.len(), 200);
        assert!(cache.contains("/p7/[0-9]+"));
        assert!(cache.contains("h99.*"));
        assert!(!cache.contains("q1|("));
    }
}
