//! Cluster rate limits (`scope: Cluster`): one GCRA bucket per key shared by every data plane,
//! kept in Redis, with no Redis round trip on the request path.
//!
//! The shared bucket hands out leases. Each data plane admits a key's requests against tokens
//! it was granted, and every sync interval the sync task (`crate::redis_sync`) tops each key's
//! lease up to its fair share (capacity / data planes) in one pipelined script call per key:
//! Redis grants only what the bucket has room for, atomically, so the data planes together
//! never admit more than the bucket allows. The one exception is a key a data plane has not
//! been granted anything for yet: it admits up to `max(1, capacity / (10 × data planes))`
//! requests (the whole capacity when it is the only one) before its first grant, which it asks
//! for at once rather than at the next tick, and reports them then. The overshoot is therefore
//! at most that allowance per data plane, and only for a key others had already drained.
//! The price of leases: tokens leased to a data plane that stops seeing a key are lost to the
//! others until the bucket refills, and a data plane's burst beyond its lease waits for the
//! next sync (about one interval).
//!
//! Without Redis (down, or no `--redis-url`) each data plane enforces its share of the limit on
//! its own: rate and capacity divided by the number of data planes Redis last counted (or the
//! configured count before it ever answered).

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use gateway_proto::validate::MAX_LIMITS;

use super::buckets::{Buckets, Counted, Limit};

const SHARDS: usize = 16;
/// A key unseen this long is forgotten (with what is left of its lease).
const IDLE: Duration = Duration::from_secs(30);

/// How the data plane is linked to its peers through Redis.
#[derive(Debug)]
pub struct ClusterLink {
    /// Redis answered the last sync.
    up: AtomicBool,
    /// Data planes sharing the limits, as Redis last counted them (or as configured).
    data_planes: AtomicU64,
    /// Syncs that failed (an outage counts every failed round).
    pub failed_syncs: AtomicU64,
    /// Script calls made to Redis.
    pub calls: AtomicU64,
    /// Wakes the sync task early: a key was seen for the first time and has no lease yet.
    pub wake: tokio::sync::Notify,
}

impl Default for ClusterLink {
    fn default() -> Self {
        Self {
            up: AtomicBool::new(false),
            data_planes: AtomicU64::new(1),
            failed_syncs: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl ClusterLink {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records a sync's result; whether that changed anything (Redis just came back, or just
    /// went away), for the log.
    pub fn set_up(&self, up: bool) -> bool {
        if !up {
            self.failed_syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.up.swap(up, Ordering::Relaxed) != up
    }

    pub fn data_planes(&self) -> u64 {
        self.data_planes.load(Ordering::Relaxed).max(1)
    }

    pub fn set_data_planes(&self, n: u64) {
        self.data_planes.store(n.max(1), Ordering::Relaxed);
    }
}

/// The live state of one Cluster limit.
#[derive(Debug)]
pub struct ClusterLimit {
    /// The shared buckets' Redis keys start with this.
    pub prefix: Box<str>,
    pub limits: Box<[Limit]>,
    leases: Box<[Mutex<HashMap<u64, Lease>>]>,
    hasher: RandomState,
    per_shard: usize,
    /// The share enforced alone, without Redis.
    alone: Buckets,
    link: Arc<ClusterLink>,
}

/// What a data plane holds of one key's shared buckets.
#[derive(Debug)]
struct Lease {
    key: Box<[u8]>,
    /// Tokens granted and not used yet, per limit.
    tokens: [u64; MAX_LIMITS],
    /// Requests admitted before any grant, in all, and those not reported to Redis yet.
    unleased: u64,
    unreported: u64,
    /// Whether a grant was ever received.
    granted: bool,
    /// How far ahead of now each shared bucket was at the last sync (nanoseconds), and when.
    ahead: [u64; MAX_LIMITS],
    synced: Instant,
    seen: Instant,
}

/// A key to sync: its hash, its bytes, the requests admitted without a lease, and the tokens
/// wanted per limit.
#[derive(Debug)]
pub struct ToSync {
    pub hash: u64,
    pub key: Box<[u8]>,
    pub unleased: u64,
    pub want: [u64; MAX_LIMITS],
}

impl ClusterLimit {
    pub(crate) fn new(
        prefix: String,
        limits: Box<[Limit]>,
        max_keys: usize,
        link: Arc<ClusterLink>,
    ) -> Self {
        Self {
            prefix: prefix.into(),
            limits,
            leases: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            alone: Buckets::new(max_keys),
            link,
        }
    }

    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Lease>> {
        self.leases[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request of `key`: against this data plane's lease while Redis answers, else
    /// against its share of the limit.
    pub fn count(&self, key: &[u8]) -> Counted {
        if !self.link.is_up() {
            return self.count_alone(key);
        }
        let n = self.link.data_planes();
        let now = Instant::now();
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        if !shard.contains_key(&hash) {
            if shard.len() >= self.per_shard {
                shard.retain(|_, lease| now.saturating_duration_since(lease.seen) < IDLE);
            }
            if shard.len() >= self.per_shard {
                // A flood of keys: past the cap, a new key is held to its share alone.
                drop(shard);
                return self.count_alone(key);
            }
            shard.insert(
                hash,
                Lease {
                    key: key.into(),
                    tokens: [0; MAX_LIMITS],
                    unleased: 0,
                    unreported: 0,
                    granted: false,
                    ahead: [0; MAX_LIMITS],
                    synced: now,
                    seen: now,
                },
            );
            self.link.wake.notify_one();
        }
        let Some(lease) = shard.get_mut(&hash) else {
            return self.count_alone(key);
        };
        lease.seen = now;
        let limits = &self.limits[..];
        let allowed = if lease.granted {
            let room = lease.tokens[..limits.len()].iter().all(|&t| t > 0);
            if room {
                for tokens in &mut lease.tokens[..limits.len()] {
                    *tokens -= 1;
                }
            }
            room
        } else {
            // Alone, the whole bucket is this data plane's lease anyway.
            let allowance = limits
                .iter()
                .map(|l| match n {
                    1 => l.capacity(),
                    n => (l.capacity() / (10 * n)).max(1),
                })
                .min()
                .unwrap_or(1);
            let room = lease.unleased < allowance;
            lease.unleased += u64::from(room);
            lease.unreported += u64::from(room);
            room
        };
        let since = u64::try_from(now.saturating_duration_since(lease.synced).as_nanos())
            .unwrap_or(u64::MAX);
        let (remaining, reset, retry) = limits
            .iter()
            .enumerate()
            .map(|(i, limit)| {
                let ahead = lease.ahead[i].saturating_sub(since);
                let retry = ahead.saturating_sub(limit.tolerance).max(limit.interval);
                (lease.tokens[i], ahead, retry)
            })
            .min_by_key(|(remaining, _, _)| *remaining)
            .unwrap_or((0, 0, 0));
        Counted {
            allowed,
            remaining,
            reset,
            retry,
        }
    }

    fn count_alone(&self, key: &[u8]) -> Counted {
        let n = self.link.data_planes();
        let mut share = [Limit {
            interval: 1,
            tolerance: 0,
        }; MAX_LIMITS];
        for (share, limit) in share.iter_mut().zip(self.limits.iter()) {
            *share = limit.share(n);
        }
        self.alone.count(key, &share[..self.limits.len()])
    }

    /// The keys to sync: those seen since their last sync, or whose lease is short of the
    /// fair share (idle ones forgotten). What they admitted without a lease is taken.
    pub fn take_pending(&self) -> Vec<ToSync> {
        let n = self.link.data_planes();
        let now = Instant::now();
        let mut out = Vec::new();
        for shard in self.leases.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|_, lease| now.saturating_duration_since(lease.seen) < IDLE);
            for (&hash, lease) in shard.iter_mut() {
                let mut want = [0; MAX_LIMITS];
                for (i, limit) in self.limits.iter().enumerate() {
                    let fair = limit.capacity().div_ceil(n);
                    want[i] = fair.saturating_sub(lease.tokens[i]);
                }
                if lease.unreported == 0 && want.iter().all(|&w| w == 0) {
                    continue;
                }
                out.push(ToSync {
                    hash,
                    key: lease.key.clone(),
                    unleased: std::mem::take(&mut lease.unreported),
                    want,
                });
            }
        }
        out
    }

    /// What Redis granted a key: tokens per limit, and how far ahead of now each shared
    /// bucket's arrival time is (nanoseconds).
    pub fn granted(&self, hash: u64, grants: &[(u64, u64)]) {
        let mut shard = self.shard(hash);
        let Some(lease) = shard.get_mut(&hash) else {
            return;
        };
        // Requests admitted without a lease while the sync was on its way were not reported:
        // the grant pays for them first.
        let covered = grants
            .iter()
            .map(|&(grant, _)| grant)
            .min()
            .unwrap_or(0)
            .min(lease.unreported);
        lease.unreported -= covered;
        for (i, &(grant, ahead)) in grants.iter().enumerate().take(MAX_LIMITS) {
            lease.tokens[i] = lease.tokens[i].saturating_add(grant - covered);
            lease.ahead[i] = ahead;
        }
        lease.granted = true;
        lease.synced = Instant::now();
    }
}

/// The Cluster limits of the side tables, and the link they share.
#[derive(Debug, Default)]
pub struct SharedLimits {
    pub link: Arc<ClusterLink>,
    limits: Mutex<HashMap<String, Arc<ClusterLimit>>>,
}

impl SharedLimits {
    /// The live state of a Cluster limit (`key`: its name and limits), created on first use.
    pub fn limit(
        &self,
        key: String,
        make: impl FnOnce(Arc<ClusterLink>) -> ClusterLimit,
    ) -> Arc<ClusterLimit> {
        let mut limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        limits
            .entry(key)
            .or_insert_with(|| Arc::new(make(self.link.clone())))
            .clone()
    }

    /// Every Cluster limit in use.
    pub fn all(&self) -> Vec<Arc<ClusterLimit>> {
        self.limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Keeps the limits `keep` accepts (those a table's policies hold).
    pub fn retain(&self, keep: impl Fn(&Arc<ClusterLimit>) -> bool) {
        self.limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, limit| keep(limit));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{ClusterLimit, ClusterLink, Limit};

    fn limit(capacity: u64, link: &Arc<ClusterLink>) -> ClusterLimit {
        let limits = [Limit {
            interval: 1_000_000_000,
            tolerance: 1_000_000_000 * (capacity - 1),
        }];
        ClusterLimit::new("p:".into(), limits.into(), 1000, link.clone())
    }

    #[test]
    fn admits_its_lease_and_a_small_allowance_before_it() {
        let link = Arc::new(ClusterLink::default());
        link.set_up(true);
        link.set_data_planes(2);
        let limit = limit(100, &link);
        // Before any grant: capacity / (10 × 2) = 5.
        assert_eq!((0..10).filter(|_| limit.count(b"k").allowed).count(), 5);
        let pending = limit.take_pending();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].unleased, pending[0].want[0]), (5, 50));
        limit.granted(pending[0].hash, &[(7, 0)]);
        assert_eq!((0..10).filter(|_| limit.count(b"k").allowed).count(), 7);
        // Without Redis: its share alone (capacity 50).
        link.set_up(false);
        assert_eq!((0..80).filter(|_| limit.count(b"k").allowed).count(), 50);
    }
}
