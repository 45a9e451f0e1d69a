//! Cluster rate limits (`scope: Cluster`): one bucket per key shared by every data plane,
//! kept in Redis, with no Redis round trip on the request path.
//!
//! Each data plane counts against its own estimate of the shared bucket (a local GCRA bucket,
//! [`Buckets`]) and notes what it admitted. Every sync interval the sync task
//! (`crate::redis_sync`) sends each key's admissions to Redis in one pipelined script call per
//! key, which adds them to the shared bucket and answers how full it is; the estimate is then
//! set to that, less a reserve for the other data planes: of the room left, each data plane
//! may take only its share (room / data planes) before the next sync. So data planes that sync
//! often cannot together admit more than the room there was; the overshoot is at most what the
//! others refill during one interval (each refills its estimate at the full rate), about
//! `(data planes - 1) × interval / (per / requests)` requests per interval, plus one request
//! per data plane from rounding. The price: a data plane alone on a key reaches the whole
//! burst over a few syncs, not at once.
//!
//! Without Redis (down, or no `--redis-url`) each data plane enforces its share of the limit on
//! its own: rate and capacity divided by the number of data planes Redis last counted (or the
//! configured count before it ever answered).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use gateway_proto::validate::MAX_LIMITS;

use super::buckets::{Buckets, Counted, Limit};

const SHARDS: usize = 16;

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
}

impl Default for ClusterLink {
    fn default() -> Self {
        Self {
            up: AtomicBool::new(false),
            data_planes: AtomicU64::new(1),
            failed_syncs: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }
}

impl ClusterLink {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records a sync's result; whether Redis was down before (so it just came back) or up
    /// before (so it just went away), for the log.
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
    /// The estimate of the shared buckets.
    shared: Arc<Buckets>,
    /// The share enforced alone, without Redis.
    alone: Buckets,
    /// Keys seen since the last sync, with what was admitted for each.
    pending: Box<[Mutex<HashMap<u64, Pending>>]>,
    max_pending: usize,
    link: Arc<ClusterLink>,
}

#[derive(Debug)]
struct Pending {
    key: Box<[u8]>,
    admitted: u64,
}

/// A key to sync: its hash in the buckets, its bytes, the requests admitted since the last.
#[derive(Debug)]
pub struct ToSync {
    pub hash: u64,
    pub key: Box<[u8]>,
    pub admitted: u64,
}

impl ClusterLimit {
    pub(crate) fn new(
        prefix: String,
        limits: Box<[Limit]>,
        shared: Arc<Buckets>,
        max_keys: usize,
        link: Arc<ClusterLink>,
    ) -> Self {
        Self {
            prefix: prefix.into(),
            limits,
            shared,
            alone: Buckets::new(max_keys),
            pending: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_pending: max_keys.div_ceil(SHARDS).max(1),
            link,
        }
    }

    /// Counts a request of `key`, against the shared buckets while Redis answers, else against
    /// this data plane's share.
    pub fn count(&self, key: &[u8]) -> Counted {
        if !self.link.is_up() {
            let n = self.link.data_planes();
            let mut share = [Limit {
                interval: 1,
                tolerance: 0,
            }; MAX_LIMITS];
            for (share, limit) in share.iter_mut().zip(self.limits.iter()) {
                *share = limit.share(n);
            }
            return self.alone.count(key, &share[..self.limits.len()]);
        }
        let hash = self.shared.hash(key);
        let counted = self.shared.count_hashed(hash, &self.limits);
        let mut pending = self.pending[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let full = pending.len() >= self.max_pending;
        match pending.get_mut(&hash) {
            Some(entry) => entry.admitted += u64::from(counted.allowed),
            // Past the cap a key is counted here only, until the next sync makes room.
            None if full => {}
            None => {
                pending.insert(
                    hash,
                    Pending {
                        key: key.into(),
                        admitted: u64::from(counted.allowed),
                    },
                );
            }
        }
        counted
    }

    /// The keys seen since the last sync, taken (the next sync starts afresh).
    pub fn take_pending(&self) -> Vec<ToSync> {
        let mut out = Vec::new();
        for shard in self.pending.iter() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            out.extend(taken.into_iter().map(|(hash, p)| ToSync {
                hash,
                key: p.key,
                admitted: p.admitted,
            }));
        }
        out
    }

    /// Sets the estimate of a key from what Redis answered: how far ahead of now each shared
    /// bucket's arrival time is (nanoseconds). The room left is shared among the data planes;
    /// requests admitted here since the sync was sent are counted again on top.
    pub fn synced(&self, hash: u64, ahead: &[u64]) {
        let n = self.link.data_planes();
        let since = self.pending[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
            .map_or(0, |p| p.admitted);
        let mut estimate = [0u64; MAX_LIMITS];
        for ((estimate, limit), &ahead) in estimate.iter_mut().zip(self.limits.iter()).zip(ahead) {
            let room = (limit.tolerance + limit.interval).saturating_sub(ahead);
            let others = room / n * (n - 1);
            *estimate = ahead
                .saturating_add(others)
                .saturating_add(since.saturating_mul(limit.interval));
        }
        self.shared
            .set_ahead(hash, &estimate[..self.limits.len()], self.limits.len());
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
