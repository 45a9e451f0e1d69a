//! Picking an endpoint: the balancers (smooth weighted round robin, least request by two random
//! choices, random, Maglev consistent hashing), endpoint health, panic mode, and the circuit
//! breaker's count of requests in flight.

use std::sync::{Arc, atomic::Ordering};

use http::HeaderName;

use super::Upstream;
use crate::health::now_ms;

/// The Maglev lookup table's size: a prime, about 65 slots per endpoint at 1,000 endpoints.
pub const MAGLEV_SIZE: usize = 65_537;

/// Below this share of usable endpoints (by count), health is ignored and every endpoint with
/// a weight takes traffic (Envoy's panic mode): better some requests to sick endpoints than all
/// of them to the few left.
pub const PANIC_PERCENT: usize = 50;

/// How the endpoint of a request is picked.
#[derive(Debug)]
pub enum Balancer {
    RoundRobin,
    LeastRequest,
    Random,
    ConsistentHash { table: Maglev, on: HashOn },
}

/// What a consistent hash is taken of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Header(HeaderName),
    Cookie(Box<str>),
    SourceIp,
}

/// Why no endpoint was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every endpoint is drained (weight 0), or none is usable and panic mode has none either.
    NoHealthy,
    /// The circuit breaker's `maxRequests` are in flight.
    Overloaded,
}

/// A request sent to an endpoint, counted while it lasts (least request, the breaker).
#[derive(Debug)]
pub struct Dispatch {
    upstream: Arc<Upstream>,
    endpoint: usize,
    breaker: bool,
}

/// A request waiting for a connection to its upstream, counted against the circuit breaker's
/// `maxPendingRequests` until dropped.
#[derive(Debug)]
pub struct Pending<'u>(Option<&'u std::sync::atomic::AtomicU32>);

impl Upstream {
    /// Counts a request that waits for a connection (one being opened for it, or room on an
    /// HTTP/2 one); `None` past the breaker's `maxPendingRequests`, for an immediate 503
    /// rather than a queue.
    pub fn pending(&self) -> Option<Pending<'_>> {
        if self.max_pending == u32::MAX {
            return Some(Pending(None));
        }
        let count = &self.side.pending;
        if count.fetch_add(1, Ordering::Relaxed) >= self.max_pending {
            count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Pending(Some(count)))
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.0 {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Dispatch {
    fn drop(&mut self) {
        if self.breaker {
            self.upstream.side.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        self.upstream.endpoints[self.endpoint]
            .state
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A Maglev lookup table: slot → endpoint index.
#[derive(Debug)]
pub struct Maglev {
    table: Box<[u32]>,
}

/// FNV-1a, 64 bits: the same on every data plane, so that a key goes to the same endpoint
/// through any of them.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV's low bits alone spread poorly.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

impl Maglev {
    /// The table for endpoints by address and weight (a weight-0 endpoint gets no slot): each
    /// endpoint fills the next free slot of its own permutation in turn, as many turns per
    /// round as its weight allows relative to the heaviest.
    pub fn build(addresses: &[&str], weights: &[u32]) -> Self {
        let m = MAGLEV_SIZE as u64;
        let heaviest = weights.iter().copied().max().unwrap_or(0);
        if heaviest == 0 {
            return Self {
                table: Box::new([]),
            };
        }
        let permutations: Vec<(u64, u64)> = addresses
            .iter()
            .map(|address| {
                let offset = stable_hash(address.as_bytes()) % m;
                let mut salted = address.as_bytes().to_vec();
                salted.push(0xff);
                let skip = stable_hash(&salted) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; addresses.len()];
        let mut credit = vec![0u64; addresses.len()];
        let mut table = vec![u32::MAX; MAGLEV_SIZE];
        let mut filled = 0;
        while filled < MAGLEV_SIZE {
            for (i, &(offset, skip)) in permutations.iter().enumerate() {
                credit[i] += u64::from(weights[i]);
                while credit[i] >= u64::from(heaviest) && filled < MAGLEV_SIZE {
                    credit[i] -= u64::from(heaviest);
                    loop {
                        let slot = ((offset + next[i] * skip) % m) as usize;
                        next[i] += 1;
                        if table[slot] == u32::MAX {
                            table[slot] = i as u32;
                            filled += 1;
                            break;
                        }
                    }
                }
            }
        }
        Self {
            table: table.into(),
        }
    }

    pub fn get(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize] as usize)
    }
}

impl Upstream {
    /// Picks the endpoint of a request (`key`: its [`stable_hash`] for a balancer that hashes,
    /// when the request has what it hashes) and counts it in flight.
    pub fn choose(
        self: &Arc<Self>,
        key: Option<u64>,
    ) -> Result<(usize, Option<Dispatch>), Refused> {
        if self.plain {
            return self.pick().map(|i| (i, None)).ok_or(Refused::NoHealthy);
        }
        let breaker = self.max_in_flight != u32::MAX;
        if breaker && self.side.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight {
            self.side.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Overloaded);
        }
        let picked = self.balance(key);
        let Some(endpoint) = picked else {
            if breaker {
                self.side.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            return Err(Refused::NoHealthy);
        };
        self.endpoints[endpoint]
            .state
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        let dispatch = Dispatch {
            upstream: self.clone(),
            endpoint,
            breaker,
        };
        Ok((endpoint, Some(dispatch)))
    }

    fn balance(&self, key: Option<u64>) -> Option<usize> {
        let now = now_ms();
        let usable = |i: usize| self.weights[i] > 0 && self.endpoints[i].state.usable(now);
        let candidate = match &self.balancer {
            Balancer::RoundRobin => self.pick()?,
            Balancer::Random => self.random()?,
            Balancer::LeastRequest => {
                let a = self.random()?;
                // Two different endpoints where there are two: the busy one must not be
                // compared with itself.
                let mut b = self.random()?;
                for _ in 0..3 {
                    if b != a {
                        break;
                    }
                    b = self.random()?;
                }
                let load = |i: usize| {
                    // Requests in flight per unit of weight, compared without division.
                    u64::from(self.endpoints[i].state.in_flight.load(Ordering::Relaxed))
                        * u64::from(self.weights[if i == a { b } else { a }])
                };
                match (usable(a), usable(b)) {
                    (true, false) => a,
                    (false, true) => b,
                    _ if load(b) < load(a) => b,
                    _ => a,
                }
            }
            Balancer::ConsistentHash { table, .. } => {
                let hash = key.unwrap_or_else(|| fastrand::u64(..));
                let first = table.get(hash)?;
                // An unusable endpoint's keys go elsewhere, each to its own next choice, and
                // come back when it does.
                let mut next = hash;
                let mut found = first;
                for _ in 0..8 {
                    if usable(found) {
                        break;
                    }
                    next = stable_hash(&next.to_le_bytes());
                    found = table.get(next)?;
                }
                found
            }
        };
        if usable(candidate) {
            return Some(candidate);
        }
        let weighted = (0..self.endpoints.len()).filter(|&i| self.weights[i] > 0);
        let healthy: Vec<usize> = weighted.clone().filter(|&i| usable(i)).collect();
        if healthy.len() * 100 < weighted.count() * PANIC_PERCENT {
            // Panic mode: health is set aside.
            return Some(candidate);
        }
        // One of the usable ones at random, so that the candidate's share spreads over all.
        if healthy.is_empty() {
            return None;
        }
        Some(healthy[fastrand::usize(..healthy.len())])
    }

    /// An endpoint at random, by weight.
    fn random(&self) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let point = fastrand::u64(..total);
        Some(self.cumulative.partition_point(|&c| c <= point))
    }

    /// Records how a request to `endpoint` ended, for outlier detection: `failed` when the
    /// endpoint answered 5xx or could not be reached in time.
    pub fn record(&self, endpoint: usize, failed: bool) {
        let Some(passive) = &self.passive else {
            return;
        };
        let Some(state) = self.endpoints.get(endpoint).map(|e| &e.state) else {
            return;
        };
        if !failed {
            state.succeeded();
            return;
        }
        if !state.failed(passive) {
            return;
        }
        let now = now_ms();
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.state.is_ejected(now))
            .count();
        if (ejected + 1) * 100 > self.endpoints.len() * passive.max_ejection_percent as usize {
            return;
        }
        let length = state.eject(passive);
        tracing::warn!(
            upstream = &*self.name,
            endpoint = self.endpoints[endpoint].address(),
            ejected_for = ?length,
            "endpoint ejected after errors in a row"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{MAGLEV_SIZE, Maglev, stable_hash};

    #[test]
    fn an_eleventh_endpoint_moves_about_one_key_in_eleven() {
        let names: Vec<String> = (0..11).map(|i| format!("10.0.0.{i}:80")).collect();
        let ten: Vec<&str> = names[..10].iter().map(String::as_str).collect();
        let eleven: Vec<&str> = names.iter().map(String::as_str).collect();
        let before = Maglev::build(&ten, &[1; 10]);
        let after = Maglev::build(&eleven, &[1; 11]);
        let keys: Vec<u64> = (0..10_000u32)
            .map(|k| stable_hash(format!("user-{k}").as_bytes()))
            .collect();
        let kept = keys
            .iter()
            .filter(|&&k| before.get(k) == after.get(k))
            .count();
        assert!(kept >= 8_500, "{kept} of 10,000 keys kept");
        // Spread: every endpoint holds about 1/11 of the slots.
        let mut slots = [0usize; 11];
        for k in 0..MAGLEV_SIZE as u64 {
            slots[after.get(k).unwrap()] += 1;
        }
        let (min, max) = (slots.iter().min().unwrap(), slots.iter().max().unwrap());
        assert!(max - min <= MAGLEV_SIZE / 100, "{slots:?}");
    }

    #[test]
    fn weights_set_shares_and_zero_drains() {
        let table = Maglev::build(&["a:1", "b:1", "c:1"], &[1, 3, 0]);
        let mut slots = [0usize; 3];
        for k in 0..MAGLEV_SIZE as u64 {
            slots[table.get(k).unwrap()] += 1;
        }
        assert_eq!(slots[2], 0);
        let ratio = slots[1] as f64 / slots[0] as f64;
        assert!((2.8..3.2).contains(&ratio), "{slots:?}");
        assert!(Maglev::build(&["a:1"], &[0]).get(1).is_none());
    }
}
