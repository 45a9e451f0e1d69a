//! The service registry on etcd: `<prefix>/registry/<service>/<id>` keys, each on a lease of
//! its own (the instance's TTL) that is renewed only when its holder says it lives, so that a
//! holder that dies or is cut off is gone within its TTL whatever this process does. Listed
//! with paged range reads at one revision, watched with a prefix watch of its own (the
//! configuration's watch skips these keys).

use std::{collections::VecDeque, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, WatchOptions,
};
use futures_util::stream;
use gateway_proto::registry;

use super::{CALL_TIMEOUT, PAGE, call, map_error, next_response, prefix_end};
use crate::store::{
    BoxFuture, Instance, InstanceBatch, InstanceEvent, InstanceLease, InstanceListing,
    InstanceWatch, Registration, StoreError,
};

/// Grants the lease, writes the key on it, and hands the lease to its holder.
pub(super) async fn register(
    client: &Client,
    prefix: &str,
    registration: Registration,
) -> Result<Box<dyn InstanceLease>, StoreError> {
    let key = format!(
        "{prefix}/{}",
        registry::key(&registration.service, &registration.id)
    );
    // etcd leases are whole seconds: round up, never shorter than asked.
    let seconds = i64::try_from(registration.ttl.as_millis().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1);
    let mut lease = EtcdLease {
        client: client.clone(),
        key,
        value: registration.value,
        seconds,
        lease: 0,
        granted: Duration::from_secs(seconds.unsigned_abs()),
        keeper: None,
        superseded: false,
    };
    lease.lease = lease.grant().await?;
    let options = PutOptions::new().with_lease(lease.lease);
    let put = call(
        client
            .kv_client()
            .put(lease.key.clone(), lease.value.clone(), Some(options)),
    )
    .await;
    if let Err(error) = put {
        lease.revoke().await;
        return Err(error);
    }
    Ok(Box::new(lease))
}

/// One instance's lease, with its keep-alive stream once it has been renewed.
struct EtcdLease {
    client: Client,
    key: String,
    value: Vec<u8>,
    seconds: i64,
    lease: i64,
    granted: Duration,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// Another holder registered the same id after this lease ran out: theirs now.
    superseded: bool,
}

impl std::fmt::Debug for EtcdLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLease")
            .field("key", &self.key)
            .field("lease", &self.lease)
            .field("granted", &self.granted)
            .field("superseded", &self.superseded)
            .finish_non_exhaustive()
    }
}

impl EtcdLease {
    async fn grant(&mut self) -> Result<i64, StoreError> {
        let granted = call(self.client.lease_client().grant(self.seconds, None)).await?;
        self.granted = Duration::from_secs(granted.ttl().unsigned_abs());
        Ok(granted.id())
    }

    /// Best effort: a lease that is not revoked runs out on its own.
    async fn revoke(&mut self) {
        if let Err(error) = call(self.client.lease_client().revoke(self.lease)).await
            && !is_not_found(&error)
        {
            tracing::warn!(key = %self.key, %error, "could not revoke an instance's lease; it runs out on its own");
        }
    }

    /// One renewal over the lease's keep-alive stream: the TTL etcd grants again (0: the
    /// lease is gone).
    async fn renew(&mut self) -> Result<i64, StoreError> {
        if self.keeper.is_none() {
            let opened = call(self.client.lease_client().keep_alive(self.lease)).await?;
            self.keeper = Some(opened);
        }
        let Some((keeper, answers)) = self.keeper.as_mut() else {
            return Err(StoreError::internal("no keep-alive stream"));
        };
        keeper.keep_alive().await.map_err(map_error)?;
        match tokio::time::timeout(CALL_TIMEOUT, answers.message()).await {
            Ok(Ok(Some(answer))) => Ok(answer.ttl()),
            Ok(Ok(None)) => Err(StoreError::Unavailable(
                "etcd ended the lease keep-alive stream".into(),
            )),
            Ok(Err(error)) => Err(map_error(error)),
            Err(_) => Err(StoreError::Unavailable(
                format!("etcd did not renew the lease within {CALL_TIMEOUT:?}").into(),
            )),
        }
    }

    /// The lease ran out: writes the instance again on a new one, unless another holder has
    /// the key now.
    async fn register_again(&mut self) -> Result<(), StoreError> {
        let lease = self.grant().await?;
        let txn = Txn::new()
            .when([Compare::version(self.key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                self.key.clone(),
                self.value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let written = call(self.client.kv_client().txn(txn)).await;
        let old = std::mem::replace(&mut self.lease, lease);
        match written {
            Ok(response) if response.succeeded() => {
                tracing::info!(key = %self.key, old_lease = old, lease, "instance's lease had run out; registered it again");
                Ok(())
            }
            Ok(_) => {
                tracing::warn!(key = %self.key, "instance's lease had run out and another holder registered it since; leaving it to them");
                self.superseded = true;
                self.revoke().await;
                Ok(())
            }
            Err(error) => {
                self.revoke().await;
                self.lease = old;
                Err(error)
            }
        }
    }
}

impl InstanceLease for EtcdLease {
    fn key(&self) -> &str {
        &self.key
    }

    fn ttl(&self) -> Duration {
        self.granted
    }

    fn keep_alive(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.superseded {
                return Ok(());
            }
            match self.renew().await {
                Ok(ttl) if ttl > 0 => Ok(()),
                Ok(_) => {
                    self.keeper = None;
                    self.register_again().await
                }
                Err(error) => {
                    // A new stream next time: this one may be broken.
                    self.keeper = None;
                    Err(error)
                }
            }
        })
    }

    fn deregister(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            if self.superseded {
                return Ok(());
            }
            // Revoking deletes the keys on the lease: ours, unless another holder has it now.
            match call(self.client.lease_client().revoke(self.lease)).await {
                Ok(_) => Ok(()),
                Err(error) if is_not_found(&error) => Ok(()),
                Err(error) => {
                    self.keeper = None;
                    Err(error)
                }
            }
        })
    }
}

/// etcd's "requested lease not found": the lease ran out already.
fn is_not_found(error: &StoreError) -> bool {
    matches!(error, StoreError::Internal(source) if source.to_string().contains("lease not found"))
}

/// Every instance below `<prefix>/registry/`, read page by page at the first page's revision.
pub(super) async fn list(client: &Client, prefix: &str) -> Result<InstanceListing, StoreError> {
    let folder = format!("{prefix}/{}", registry::FOLDER);
    let end = prefix_end(folder.as_bytes());
    let mut kv = client.kv_client();
    let mut listing = InstanceListing::default();
    let mut from = folder.clone().into_bytes();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if listing.revision > 0 {
            options = options.with_revision(listing.revision);
        }
        let page = call(kv.get(from.clone(), Some(options))).await?;
        if listing.revision == 0 {
            listing.revision = page.header().map_or(0, |h| h.revision());
        }
        for item in page.kvs() {
            let key = String::from_utf8_lossy(item.key());
            if let Some(instance) = instance_of(prefix, &key, item.value()) {
                listing.instances.push(instance);
            }
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    listing
        .instances
        .sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
    Ok(listing)
}

/// The instance a key below the prefix holds, if it is an instance's key.
fn instance_of(prefix: &str, key: &str, value: &[u8]) -> Option<Instance> {
    let relative = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let Some((service, id)) = registry::parse_key(relative) else {
        tracing::warn!(%key, "skipping a registry key that is not registry/<service>/<id>");
        return None;
    };
    Some(Instance {
        service: service.to_owned(),
        id: id.to_owned(),
        value: value.to_vec(),
    })
}

/// Watches `<prefix>/registry/` from `from_revision`.
pub(super) async fn watch(
    client: &Client,
    prefix: &str,
    from_revision: i64,
) -> Result<InstanceWatch, StoreError> {
    let folder = format!("{prefix}/{}", registry::FOLDER);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(from_revision);
    let stream = call(client.watch_client().watch(folder, Some(options))).await?;
    let state = Watching {
        stream,
        prefix: prefix.to_owned(),
        pending: VecDeque::new(),
        done: false,
    };
    Ok(Box::pin(stream::unfold(state, Watching::next)))
}

struct Watching {
    stream: etcd_client::WatchStream,
    prefix: String,
    pending: VecDeque<InstanceBatch>,
    done: bool,
}

impl Watching {
    async fn next(mut self) -> Option<(Result<InstanceBatch, StoreError>, Self)> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                return Some((Ok(batch), self));
            }
            if self.done {
                return None;
            }
            let response = match next_response(&mut self.stream).await? {
                Ok(response) => response,
                Err(error) => {
                    self.done = true;
                    return Some((Err(error), self));
                }
            };
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let Some(instance) = instance_of(&self.prefix, &key, kv.value()) else {
                    continue;
                };
                let change = match event.event_type() {
                    EventType::Put => InstanceEvent::Put(instance),
                    EventType::Delete => InstanceEvent::Delete {
                        service: instance.service,
                        id: instance.id,
                    },
                };
                let revision = kv.mod_revision();
                if self.pending.back().is_none_or(|b| b.revision != revision) {
                    self.pending.push_back(InstanceBatch {
                        revision,
                        events: Vec::new(),
                    });
                }
                if let Some(batch) = self.pending.back_mut() {
                    batch.events.push(change);
                }
            }
        }
    }
}
