//! Rate limit buckets: live state that outlives table swaps. Each limit is a GCRA token
//! bucket (one theoretical arrival time per key and limit). Keys are hashed into 16 shards,
//! each a small map behind its own lock, bounded: past the cap the key seen first goes first,
//! and a key that is idle (its buckets full again) goes as soon as it reaches the front. An
//! evicted key that comes back starts with full buckets.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use gateway_proto::validate::MAX_LIMITS;

const SHARDS: usize = 16;

/// One limit, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Between two requests at the steady rate.
    pub interval: u64,
    /// How far ahead of now a key's arrival time may be: (capacity - 1) intervals.
    pub tolerance: u64,
}

impl Limit {
    /// The requests the bucket holds when full.
    pub fn capacity(&self) -> u64 {
        self.tolerance / self.interval.max(1) + 1
    }

    /// One of `n` equal shares of this limit: the rate and the capacity divided (a share holds
    /// at least one request).
    pub fn share(&self, n: u64) -> Self {
        let n = n.max(1);
        let interval = self.interval.saturating_mul(n);
        let capacity = (self.capacity() / n).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(capacity - 1),
        }
    }
}

/// The buckets of one policy.
#[derive(Debug)]
pub struct Buckets {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    base: Instant,
    per_shard: usize,
}

#[derive(Debug, Default)]
struct Shard {
    arrivals: HashMap<u64, [u64; MAX_LIMITS]>,
    order: VecDeque<u64>,
}

/// A request counted against every limit.
#[derive(Debug)]
pub struct Counted {
    pub allowed: bool,
    /// The tightest limit's requests left, and nanoseconds until it is full again.
    pub remaining: u64,
    pub reset: u64,
    /// Nanoseconds until a refused request could pass.
    pub retry: u64,
}

impl Buckets {
    pub(crate) fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            base: Instant::now()
                .checked_sub(Duration::from_secs(1))
                .unwrap_or_else(Instant::now),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// Counts a request of `key`: admitted only if every limit has room, and then taken from
    /// every one.
    pub fn count(&self, key: &[u8], limits: &[Limit]) -> Counted {
        self.count_hashed(self.hash(key), limits)
    }

    /// What [`count`](Self::count) finds a key by.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sets how far ahead of now each limit's arrival time is for the key of `hash` (what a
    /// shared bucket's owner says), creating it if need be.
    pub fn set_ahead(&self, hash: u64, ahead: &[u64], limits: usize) {
        let now = self.now();
        let mut arrivals = [0; MAX_LIMITS];
        for (tat, ahead) in arrivals.iter_mut().zip(ahead) {
            *tat = now.saturating_add(*ahead);
        }
        let mut shard = self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.put(hash, arrivals, now, self.per_shard, limits);
    }

    /// [`count`](Self::count), for a key already hashed.
    pub fn count_hashed(&self, hash: u64, limits: &[Limit]) -> Counted {
        let now = self.now();
        let mut shard = self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let arrivals = shard
            .arrivals
            .get(&hash)
            .copied()
            .unwrap_or([0; MAX_LIMITS]);
        let mut allowed = true;
        let mut retry = 0u64;
        let mut next = arrivals;
        for (i, limit) in limits.iter().enumerate().take(MAX_LIMITS) {
            let tat = arrivals[i].max(now);
            if tat - now > limit.tolerance {
                allowed = false;
                retry = retry.max(tat - limit.tolerance - now);
            } else {
                next[i] = tat.saturating_add(limit.interval);
            }
        }
        let kept = if allowed { next } else { arrivals };
        if allowed {
            shard.put(hash, kept, now, self.per_shard, limits.len());
        }
        drop(shard);
        let (remaining, reset) = limits
            .iter()
            .enumerate()
            .map(|(i, limit)| {
                let ahead = kept[i].max(now) - now;
                let room = (limit.tolerance + limit.interval).saturating_sub(ahead);
                (room / limit.interval, ahead)
            })
            .min_by_key(|(remaining, _)| *remaining)
            .unwrap_or((0, 0));
        Counted {
            allowed,
            remaining,
            reset,
            retry,
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .arrivals
                    .len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shard {
    fn put(&mut self, hash: u64, arrivals: [u64; MAX_LIMITS], now: u64, cap: usize, limits: usize) {
        if self.arrivals.insert(hash, arrivals).is_some() {
            return;
        }
        self.order.push_back(hash);
        // The oldest key goes when the shard is full, or as soon as it is idle (its buckets
        // full again: forgetting it changes nothing).
        while let Some(&oldest) = self.order.front() {
            let idle = oldest != hash
                && self
                    .arrivals
                    .get(&oldest)
                    .is_none_or(|a| a[..limits].iter().all(|&tat| tat <= now));
            if self.arrivals.len() > cap || idle {
                self.order.pop_front();
                self.arrivals.remove(&oldest);
            } else {
                break;
            }
        }
    }
}
