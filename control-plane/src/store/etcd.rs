//! The etcd store: every resource one key `<prefix>/<kind plural>/<name>`, the marker
//! `<prefix>/_meta/revision`, the data-plane registry `<prefix>/_dataplanes/<id>` on a lease,
//! and the service registry `<prefix>/registry/<service>/<id>` ([`instances`]).
//!
//! Lists are paged range reads pinned at one revision (etcd 3.4 has no range streams); commits
//! are one transaction guarded on the marker's mod revision (large ones nested in sub-
//! transactions, to stay under etcd's `--max-txn-ops`); watches cover the whole prefix and keep
//! only configuration keys.

use std::{collections::VecDeque, future::Future, sync::Arc, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp, WatchOptions,
};
use futures_util::stream;
use gateway_proto::{ResourceKind, v1::DataPlaneStatus};

use super::{
    BoxFuture, Event, InstanceLease, InstanceListing, InstanceWatch, Listing, Op, Registration,
    Store, StoreError, WatchBatch, WatchStream,
    keys::{self, Key},
    sort_resources,
};

mod instances;
mod registry;

use registry::Registry;

/// Keys per page of a list.
const PAGE: i64 = 500;
/// Time allowed for one unary etcd call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// etcd's `--max-txn-ops` (default 128). etcd checks a nested transaction against what its
/// parents left of it: the operation counts along any path from the top add up to at most this.
const MAX_TXN_OPS: usize = 128;

/// A store on an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// Without a trailing slash, e.g. `/gateway/v1`.
    prefix: String,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

// === impl EtcdStore ===

impl EtcdStore {
    /// Connects to etcd. The connection is made lazily: an unreachable etcd is not an error
    /// here (calls fail with [`StoreError::Unavailable`] until it is up); a malformed endpoint
    /// or prefix is. Starts the task that keeps the registry lease alive.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Open("no etcd endpoints given".into()));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(StoreError::Open(
                "the etcd prefix must not be empty (e.g. /gateway/v1)".into(),
            ));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Open(Box::new(e)))?;
        let registry = Registry::start(client.clone(), prefix.to_owned());
        tracing::info!(?endpoints, prefix, "using etcd");
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                prefix: prefix.to_owned(),
                registry,
            }),
        })
    }

    /// The key prefix, without a trailing slash.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn key(&self, relative: &str) -> String {
        format!("{}/{relative}", self.inner.prefix)
    }

    async fn list_once(&self) -> Result<Listing, StoreError> {
        let mut kv = self.inner.client.kv_client();
        let marker = call(kv.get(self.key(keys::MARKER), None)).await?;
        let revision = marker.header().map_or(0, |h| h.revision());
        let mut listing = Listing {
            version: marker.kvs().first().map_or(0, |kv| kv.mod_revision()),
            revision,
            resources: Vec::new(),
        };
        for kind in ResourceKind::ALL {
            let start = self.key(&format!("{}/", kind.plural()));
            let end = prefix_end(start.as_bytes());
            let mut from = start.clone().into_bytes();
            loop {
                let options = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(PAGE)
                    .with_revision(revision);
                let page = call(kv.get(from.clone(), Some(options))).await?;
                for item in page.kvs() {
                    let key = String::from_utf8_lossy(item.key());
                    let relative = key.strip_prefix(&start).unwrap_or_default();
                    match keys::parse(&format!("{}/{relative}", kind.plural())) {
                        Key::Resource(kind, name) => {
                            match keys::decode(kind, name, item.value(), item.mod_revision()) {
                                Ok(resource) => listing.resources.push(resource),
                                Err(reason) => {
                                    tracing::error!(%key, %reason, "skipping an unreadable key");
                                }
                            }
                        }
                        Key::Marker | Key::Other => {}
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
        }
        sort_resources(&mut listing.resources);
        Ok(listing)
    }
}

impl Store for EtcdStore {
    fn list(&self) -> BoxFuture<'_, Result<Listing, StoreError>> {
        Box::pin(async move {
            // A compaction between two pages of one listing: read again at a newer revision.
            let mut attempts = 0;
            loop {
                match self.list_once().await {
                    Err(StoreError::Compacted { .. }) if attempts < 3 => attempts += 1,
                    other => return other,
                }
            }
        })
    }

    fn commit(
        &self,
        expected_version: i64,
        ops: Vec<Op>,
    ) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            let marker = self.key(keys::MARKER);
            let mut txn_ops = Vec::with_capacity(ops.len() + 1);
            for op in ops {
                match op {
                    Op::Put(resource) => {
                        let (_, key) = keys::of_resource(&resource)?;
                        txn_ops.push(TxnOp::put(self.key(&key), keys::encode(&resource), None));
                    }
                    Op::Delete(kind, name) => {
                        let key = gateway_proto::resource_key(kind, &name);
                        txn_ops.push(TxnOp::delete(self.key(&key), None));
                    }
                }
            }
            let mut txn_ops = nest(txn_ops);
            txn_ops.push(TxnOp::put(marker.clone(), Vec::new(), None));
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    marker,
                    CompareOp::Equal,
                    expected_version,
                )])
                .and_then(txn_ops);
            let response = call(self.inner.client.kv_client().txn(txn)).await?;
            if !response.succeeded() {
                return Err(StoreError::Conflict {
                    expected: expected_version,
                });
            }
            response
                .header()
                .map(|h| h.revision())
                .ok_or_else(|| StoreError::internal("etcd answered a transaction without header"))
        })
    }

    fn watch(&self, from_revision: i64) -> BoxFuture<'_, Result<WatchStream, StoreError>> {
        Box::pin(async move {
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(from_revision)
                .with_progress_notify();
            let watch = call(
                self.inner
                    .client
                    .watch_client()
                    .watch(format!("{}/", self.inner.prefix), Some(options)),
            )
            .await?;
            let state = Watching {
                stream: watch,
                prefix: format!("{}/", self.inner.prefix),
                pending: VecDeque::new(),
                done: false,
            };
            Ok(Box::pin(stream::unfold(state, Watching::next)) as WatchStream)
        })
    }

    fn put_dataplane(&self, status: DataPlaneStatus) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.inner.registry.put(status))
    }

    fn remove_dataplane(&self, id: &str) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.to_owned();
        Box::pin(async move { self.inner.registry.remove(&id).await })
    }

    fn list_dataplanes(&self) -> BoxFuture<'_, Result<Vec<DataPlaneStatus>, StoreError>> {
        Box::pin(self.inner.registry.list())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.registry.close())
    }

    fn register_instance(
        &self,
        registration: Registration,
    ) -> BoxFuture<'_, Result<Box<dyn InstanceLease>, StoreError>> {
        Box::pin(instances::register(
            &self.inner.client,
            &self.inner.prefix,
            registration,
        ))
    }

    fn list_instances(&self) -> BoxFuture<'_, Result<InstanceListing, StoreError>> {
        Box::pin(instances::list(&self.inner.client, &self.inner.prefix))
    }

    fn watch_instances(
        &self,
        from_revision: i64,
    ) -> BoxFuture<'_, Result<InstanceWatch, StoreError>> {
        Box::pin(instances::watch(
            &self.inner.client,
            &self.inner.prefix,
            from_revision,
        ))
    }
}

/// The next response of an etcd watch; `None` when the stream ended, an error when it broke or
/// etcd cancelled it (compacted history included). The config watch and the registry's share it.
pub(super) async fn next_response(
    stream: &mut etcd_client::WatchStream,
) -> Option<Result<etcd_client::WatchResponse, StoreError>> {
    let response = match stream.message().await {
        Ok(Some(response)) => response,
        Ok(None) => return None,
        Err(error) => return Some(Err(map_error(error))),
    };
    if response.canceled() {
        let error = if response.compact_revision() > 0 {
            StoreError::Compacted {
                compact_revision: response.compact_revision(),
            }
        } else {
            StoreError::Unavailable(
                format!("etcd canceled the watch: {}", response.cancel_reason()).into(),
            )
        };
        return Some(Err(error));
    }
    Some(Ok(response))
}

/// A watch in progress: etcd answers with several revisions per message; we hand out one batch
/// per revision.
struct Watching {
    stream: etcd_client::WatchStream,
    prefix: String,
    pending: VecDeque<WatchBatch>,
    done: bool,
}

impl Watching {
    async fn next(mut self) -> Option<(Result<WatchBatch, StoreError>, Self)> {
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
                self.take_event(event);
            }
        }
    }

    fn take_event(&mut self, event: &etcd_client::Event) {
        let Some(kv) = event.kv() else { return };
        let key = String::from_utf8_lossy(kv.key());
        let Some(relative) = key.strip_prefix(&self.prefix) else {
            return;
        };
        let revision = kv.mod_revision();
        let change = match (keys::parse(relative), event.event_type()) {
            (Key::Marker, etcd_client::EventType::Put) => None,
            (Key::Resource(kind, name), etcd_client::EventType::Put) => {
                match keys::decode(kind, name, kv.value(), revision) {
                    Ok(resource) => Some(Event::Put(resource)),
                    Err(reason) => {
                        tracing::error!(%key, %reason, "skipping an unreadable key");
                        return;
                    }
                }
            }
            (Key::Resource(kind, name), etcd_client::EventType::Delete) => {
                Some(Event::Delete(kind, name.to_owned()))
            }
            _ => return,
        };
        if self.pending.back().is_none_or(|b| b.revision != revision) {
            self.pending.push_back(WatchBatch {
                revision,
                ..WatchBatch::default()
            });
        }
        let Some(batch) = self.pending.back_mut() else {
            return;
        };
        match change {
            Some(event) => batch.events.push(event),
            None => batch.version_changed = Some(revision),
        }
    }
}

/// Groups operations into nested transactions that etcd accepts: a tree of `levels` levels
/// with at most `fan_out` operations each, where `fan_out * levels` stays within the limit (one
/// slot at the top is left for the marker's put). Three levels hold 74,088 operations.
fn nest(ops: Vec<TxnOp>) -> Vec<TxnOp> {
    let budget = MAX_TXN_OPS - 1;
    if ops.len() <= budget {
        return ops;
    }
    let mut levels: u32 = 2;
    while (budget / levels as usize)
        .checked_pow(levels)
        .is_some_and(|capacity| capacity < ops.len())
    {
        levels += 1;
    }
    let fan_out = budget / levels as usize;
    let mut ops = ops;
    while ops.len() > fan_out {
        let mut nested = Vec::with_capacity(ops.len().div_ceil(fan_out));
        let mut rest = ops.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<TxnOp> = rest.by_ref().take(fan_out).collect();
            nested.push(TxnOp::txn(Txn::new().and_then(chunk)));
        }
        ops = nested;
    }
    ops
}

/// The end of the range of every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Runs one unary etcd call with a deadline, mapping its errors.
async fn call<T>(
    future: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(result) => result.map_err(map_error),
        Err(_) => Err(StoreError::Unavailable(
            format!("etcd did not answer within {CALL_TIMEOUT:?}").into(),
        )),
    }
}

fn map_error(e: etcd_client::Error) -> StoreError {
    use tonic::Code;
    match &e {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::OutOfRange if status.message().contains("compacted") => StoreError::Compacted {
                compact_revision: 0,
            },
            // etcd's --max-request-bytes ("request is too large"), its gRPC message limit
            // ("received message larger than max") and --max-txn-ops: retrying will not help.
            Code::InvalidArgument | Code::ResourceExhausted
                if status.message().contains("too large")
                    || status.message().contains("larger than max")
                    || status.message().contains("too many operations") =>
            {
                StoreError::TooLarge(status.message().to_owned())
            }
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::ResourceExhausted => StoreError::Unavailable(Box::new(e)),
            _ => StoreError::Internal(Box::new(e)),
        },
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_)
        | etcd_client::Error::LeaseKeepAliveError(_) => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::Internal(Box::new(e)),
    }
}

#[cfg(test)]
mod tests;
