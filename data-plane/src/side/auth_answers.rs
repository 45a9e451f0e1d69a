//! Auth services' answers, kept for a policy's `cacheTtl`: live state that outlives table
//! swaps. An answer is found by the digest of everything the auth request said (method, URI,
//! host, client address, the headers passed), so two requests share an answer only when the
//! service was asked the same question. Bounded: a full shard first drops what has expired,
//! then an arbitrary entry (the request that needed it asks again).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

const SHARDS: usize = 8;

/// What an auth service answered.
#[derive(Debug)]
pub enum AuthAnswer {
    /// 2xx: the request goes on, with these of the answer's headers added.
    Allow(Box<[(HeaderName, HeaderValue)]>),
    /// Anything else, relayed to the client as the service sent it.
    Deny {
        status: StatusCode,
        headers: Box<[(HeaderName, HeaderValue)]>,
        body: Bytes,
    },
}

/// The answers of one policy.
#[derive(Debug)]
pub struct AuthAnswers {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

/// Answers by the digest of their question.
type Shard = HashMap<[u8; 32], Kept>;

#[derive(Debug)]
struct Kept {
    until: Instant,
    answer: Arc<AuthAnswer>,
}

impl AuthAnswers {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &[u8; 32]) -> &Mutex<Shard> {
        // A digest's bytes are as good as any hash of them.
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The answer kept for `key`, unless it has expired.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Arc<AuthAnswer>> {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.get(key) {
            Some(kept) if kept.until > now => Some(kept.answer.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `answer` for `key` until `until`.
    pub fn put(&self, key: [u8; 32], answer: Arc<AuthAnswer>, until: Instant, now: Instant) {
        let mut shard = self
            .shard(&key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, kept| kept.until > now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(key, Kept { until, answer });
    }

    /// Answers kept (expired ones included until they are found or pushed out).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, Instant},
    };

    use super::{AuthAnswer, AuthAnswers};

    #[test]
    fn answers_expire_and_stay_bounded() {
        let answers = AuthAnswers::new(16);
        let now = Instant::now();
        let allow = Arc::new(AuthAnswer::Allow(Box::new([])));
        answers.put([1; 32], allow.clone(), now + Duration::from_secs(5), now);
        assert!(answers.get(&[1; 32], now).is_some());
        assert!(
            answers
                .get(&[1; 32], now + Duration::from_secs(5))
                .is_none()
        );
        assert!(answers.get(&[2; 32], now).is_none());
        for i in 0..=255u8 {
            answers.put([i; 32], allow.clone(), now + Duration::from_secs(5), now);
        }
        assert!(answers.len() <= 16, "{} answers kept", answers.len());
    }
}
