//! Building the router, whole or by updating the buckets a change touches.

use std::{cmp::Reverse, collections::HashMap, sync::Arc};

use super::{
    Bucket, BucketBuilder, Candidate, CompiledPath, Conditions, Host, MatchOf, Pattern, Place,
    Router, RouterBuilder,
};
use crate::table::{
    Rule,
    hash::{FxHashMap, FxHashSet},
};

// === impl RouterBuilder ===

impl RouterBuilder {
    /// Adds one match of a rule; where it went is pushed to `places`, for the route's later
    /// removal.
    pub(crate) fn add(
        &mut self,
        hostnames: &[String],
        path: &CompiledPath,
        conditions: &Arc<Conditions>,
        of: MatchOf<'_>,
        places: &mut Vec<(Host, Place)>,
    ) {
        let MatchOf { rule, route, seq } = of;
        let candidate = Candidate {
            rule: rule.clone(),
            key: (
                Reverse(conditions.method.is_some()),
                Reverse(conditions.headers.len()),
                Reverse(conditions.query.len()),
                route.clone(),
                seq,
            ),
            conditions: conditions.clone(),
        };
        let hosts: Vec<Host> = if hostnames.is_empty() {
            vec![Host::Any]
        } else {
            hostnames
                .iter()
                .map(|h| match h.strip_prefix("*.") {
                    Some(suffix) => Host::Wildcard(suffix.into()),
                    None => Host::Exact(h.as_str().into()),
                })
                .collect()
        };
        for host in hosts {
            let place = self
                .buckets
                .entry(host.clone())
                .or_default()
                .add(path, candidate.clone());
            places.push((host, place));
        }
    }

    pub(crate) fn build(self) -> Router {
        let mut router = Router::default();
        for (host, bucket) in self.buckets {
            router.set(host, Some(Arc::new(bucket.build(Bucket::default()))));
        }
        router
    }
}

// === impl Router (updates) ===

impl Router {
    /// This router with the matches of the rules in `removed` (by address, found at `places`)
    /// taken out and those of `added` put in. Only the buckets they touch are rebuilt.
    pub(crate) fn update<'p>(
        &self,
        removed: &FxHashSet<usize>,
        places: impl IntoIterator<Item = &'p (Host, Place)>,
        added: RouterBuilder,
    ) -> Router {
        let mut next = self.clone();
        let mut edits: HashMap<Host, (Vec<&Place>, BucketBuilder)> = HashMap::new();
        for (host, place) in places {
            edits.entry(host.clone()).or_default().0.push(place);
        }
        for (host, builder) in added.buckets {
            edits.entry(host).or_default().1 = builder;
        }
        for (host, (places, builder)) in edits {
            let mut bucket = next.get(&host).map(|b| (**b).clone()).unwrap_or_default();
            bucket.remove(removed, &places);
            let bucket = builder.build(bucket);
            let empty =
                bucket.exact.is_empty() && bucket.prefix.is_empty() && bucket.patterns.is_empty();
            next.set(host, (!empty).then(|| Arc::new(bucket)));
        }
        next
    }

    fn get(&self, host: &Host) -> Option<&Arc<Bucket>> {
        match host {
            Host::Exact(h) => self.exact_hosts.get(h),
            Host::Wildcard(s) => self.wildcard_hosts.get(s),
            Host::Any => self.any_host.as_ref(),
        }
    }

    fn set(&mut self, host: Host, bucket: Option<Arc<Bucket>>) {
        let (map, key) = match host {
            Host::Exact(h) => (&mut self.exact_hosts, h),
            Host::Wildcard(s) => (&mut self.wildcard_hosts, s),
            Host::Any => {
                self.any_host = bucket;
                return;
            }
        };
        match bucket {
            Some(bucket) => {
                map.insert(key, bucket);
            }
            None => {
                map.remove(&key);
            }
        }
    }
}

// === impl Bucket (updates) ===

impl Bucket {
    /// Takes out the candidates of the rules in `removed`, visiting only `places`.
    fn remove(&mut self, removed: &FxHashSet<usize>, places: &[&Place]) {
        let keep = |candidates: &Arc<[Candidate]>| -> Option<Arc<[Candidate]>> {
            let kept: Vec<Candidate> = candidates
                .iter()
                .filter(|c| !removed.contains(&address(&c.rule)))
                .cloned()
                .collect();
            (!kept.is_empty()).then(|| kept.into())
        };
        let mut patterns = false;
        for place in places {
            let (map, path) = match place {
                Place::Exact(path) => (&mut self.exact, path),
                Place::Prefix(path) => (&mut self.prefix, path),
                Place::Pattern => {
                    patterns = true;
                    continue;
                }
            };
            match map.get(path).and_then(keep) {
                Some(kept) => {
                    map.insert(path.clone(), kept);
                }
                None => {
                    map.remove(path);
                }
            }
        }
        if patterns {
            self.patterns = self
                .patterns
                .iter()
                .filter(|p| !removed.contains(&address(&p.candidate.rule)))
                .cloned()
                .collect();
        }
        self.max_prefix_len = self.prefix.keys().map(|k| k.len()).max().unwrap_or(0);
    }
}

// === impl BucketBuilder ===

impl BucketBuilder {
    fn add(&mut self, path: &CompiledPath, candidate: Candidate) -> Place {
        match path {
            CompiledPath::Exact(p) => {
                let p: Arc<str> = p.as_ref().into();
                self.exact.entry(p.clone()).or_default().push(candidate);
                Place::Exact(p)
            }
            CompiledPath::Prefix(p) => {
                let p: Arc<str> = p.as_ref().into();
                self.prefix.entry(p.clone()).or_default().push(candidate);
                Place::Prefix(p)
            }
            CompiledPath::Template(t) => {
                self.patterns.push(Arc::new(Pattern {
                    rank: t.literal_prefix_len(),
                    template: true,
                    path: path.clone(),
                    candidate,
                }));
                Place::Pattern
            }
            CompiledPath::Regex(_) => {
                self.patterns.push(Arc::new(Pattern {
                    rank: 0,
                    template: false,
                    path: path.clone(),
                    candidate,
                }));
                Place::Pattern
            }
        }
    }

    /// `into` with these matches added, each index in precedence order.
    fn build(self, mut into: Bucket) -> Bucket {
        let merge = |map: &mut FxHashMap<Arc<str>, Arc<[Candidate]>>,
                     added: HashMap<Arc<str>, Vec<Candidate>>| {
            for (path, mut candidates) in added {
                if let Some(old) = map.get(&path) {
                    candidates.extend(old.iter().cloned());
                }
                candidates.sort_by(|a, b| a.key.cmp(&b.key));
                map.insert(path, candidates.into());
            }
        };
        merge(&mut into.exact, self.exact);
        let prefixes = !self.prefix.is_empty();
        merge(&mut into.prefix, self.prefix);
        if prefixes {
            into.max_prefix_len = into.prefix.keys().map(|k| k.len()).max().unwrap_or(0);
        }
        if !self.patterns.is_empty() {
            let mut patterns = self.patterns;
            patterns.extend(into.patterns.iter().cloned());
            patterns.sort_by(|a, b| {
                (Reverse(a.rank), Reverse(a.template), &a.candidate.key).cmp(&(
                    Reverse(b.rank),
                    Reverse(b.template),
                    &b.candidate.key,
                ))
            });
            into.patterns = patterns.into();
        }
        into
    }
}

/// A rule's identity while the tables holding it live: its address.
pub(crate) fn address(rule: &Arc<Rule>) -> usize {
    Arc::as_ptr(rule) as usize
}
