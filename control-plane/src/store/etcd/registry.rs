//! The data-plane registry on etcd: `<prefix>/_dataplanes/<id>` keys attached to one lease per
//! control-plane process, kept alive by a task. When the lease is lost (etcd down longer than
//! the TTL), the task grants a new one and writes this process's entries again.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use gateway_proto::v1::DataPlaneStatus;
use prost::Message as _;
use tokio::sync::{Mutex, watch};

use super::{call, keys};
use crate::{backoff::Backoff, store::StoreError};

/// Lease time to live: a control plane that dies takes its entries with it this fast.
const TTL_SECONDS: i64 = 15;
/// Keep-alive period: a third of the TTL, so two may be lost.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a registry write waits for the first lease.
const GRANT_WAIT: Duration = Duration::from_secs(5);

pub(super) struct Registry {
    client: Client,
    prefix: String,
    state: Mutex<State>,
    /// The current lease, for writers waiting for the first grant.
    granted: watch::Sender<Option<i64>>,
    closed: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    lease: Option<i64>,
    /// The entries this process wrote, to write again under a new lease.
    entries: BTreeMap<String, DataPlaneStatus>,
}

// === impl Registry ===

impl Registry {
    pub(super) fn start(client: Client, prefix: String) -> Arc<Self> {
        let (closed, closed_rx) = watch::channel(false);
        let registry = Arc::new(Self {
            client,
            prefix,
            state: Mutex::new(State::default()),
            granted: watch::channel(None).0,
            closed,
        });
        tokio::spawn(keep_lease(Arc::downgrade(&registry), closed_rx));
        registry
    }

    fn key(&self, id: &str) -> String {
        format!("{}/{}{id}", self.prefix, keys::DATAPLANES)
    }

    async fn write(&self, lease: i64, status: &DataPlaneStatus) -> Result<(), StoreError> {
        let options = PutOptions::new().with_lease(lease);
        call(self.client.kv_client().put(
            self.key(&status.id),
            status.encode_to_vec(),
            Some(options),
        ))
        .await
        .map(drop)
    }

    pub(super) async fn put(&self, status: DataPlaneStatus) -> Result<(), StoreError> {
        let mut granted = self.granted.subscribe();
        {
            let mut state = self.state.lock().await;
            state.entries.insert(status.id.clone(), status.clone());
            if let Some(lease) = state.lease {
                return self.write(lease, &status).await;
            }
        }
        // The entry is written with every other one as soon as a lease is granted.
        match tokio::time::timeout(GRANT_WAIT, granted.wait_for(Option::is_some)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StoreError::Unavailable(
                "no registry lease from etcd yet; the entry will be written once there is one"
                    .into(),
            )),
        }
    }

    pub(super) async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.entries.remove(id);
        let Some(lease) = state.lease else {
            return Ok(());
        };
        // Only our own entry: another control plane may hold this data plane by now.
        let key = self.key(id);
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::delete(key, None)]);
        call(self.client.kv_client().txn(txn)).await.map(drop)
    }

    pub(super) async fn list(&self) -> Result<Vec<DataPlaneStatus>, StoreError> {
        let key = self.key("");
        let response = call(
            self.client
                .kv_client()
                .get(key, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let mut all = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            match DataPlaneStatus::decode(kv.value()) {
                Ok(status) => all.push(status),
                Err(e) => tracing::warn!(
                    key = %String::from_utf8_lossy(kv.key()),
                    error = %e,
                    "skipping an unreadable data-plane entry"
                ),
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    /// Stops the keep-alive task and revokes the lease, so this process's entries go at once.
    pub(super) async fn close(&self) {
        self.closed.send_replace(true);
        let mut state = self.state.lock().await;
        state.entries.clear();
        if let Some(lease) = state.lease.take()
            && let Err(e) = call(self.client.lease_client().revoke(lease)).await
        {
            tracing::warn!(error = %e, "could not revoke the registry lease; it expires in {TTL_SECONDS}s");
        }
    }

    /// Installs a new lease and writes every entry under it.
    async fn install(&self, lease: i64) -> bool {
        let mut state = self.state.lock().await;
        if *self.closed.borrow() {
            drop(state);
            let _ = call(self.client.lease_client().revoke(lease)).await;
            return false;
        }
        state.lease = Some(lease);
        for status in state.entries.values() {
            if let Err(e) = self.write(lease, status).await {
                tracing::warn!(id = %status.id, error = %e, "could not register a data plane");
            }
        }
        self.granted.send_replace(Some(lease));
        true
    }

    async fn forget(&self, lease: i64) {
        let mut state = self.state.lock().await;
        if state.lease == Some(lease) {
            state.lease = None;
            self.granted.send_replace(None);
        }
    }
}

/// Grants the lease and keeps it alive until the registry closes or is dropped.
async fn keep_lease(registry: std::sync::Weak<Registry>, mut closed: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let Some(this) = registry.upgrade() else {
            return;
        };
        let mut leases = this.client.lease_client();
        let lease = match call(leases.grant(TTL_SECONDS, None)).await {
            Ok(granted) => granted.id(),
            Err(e) => {
                tracing::warn!(error = %e, "could not get a registry lease from etcd; retrying");
                drop(this);
                if wait_or_closed(&mut closed, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        if !this.install(lease).await {
            return;
        }
        tracing::debug!(lease, "registry lease granted");
        drop(this);
        match call(leases.keep_alive(lease)).await {
            Ok((mut keeper, mut responses)) => loop {
                if wait_or_closed(&mut closed, KEEP_ALIVE).await {
                    return;
                }
                if let Err(e) = keeper.keep_alive().await {
                    tracing::warn!(lease, error = %e, "registry lease keep-alive failed");
                    break;
                }
                match tokio::time::timeout(KEEP_ALIVE, responses.message()).await {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => backoff.reset(),
                    Ok(Ok(Some(_))) => {
                        tracing::warn!(lease, "registry lease expired; granting a new one");
                        break;
                    }
                    Ok(Ok(None)) | Err(_) => {
                        tracing::warn!(lease, "registry lease keep-alive stream broke");
                        break;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(lease, error = %e, "registry lease keep-alive failed");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!(lease, error = %e, "could not keep the registry lease alive"),
        }
        if let Some(this) = registry.upgrade() {
            this.forget(lease).await;
        }
        if wait_or_closed(&mut closed, backoff.next_delay()).await {
            return;
        }
    }
}

/// Sleeps for `delay`; true when the registry closed meanwhile.
async fn wait_or_closed(closed: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    if *closed.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => *closed.borrow(),
        _ = closed.changed() => true,
    }
}
