//! Writes the configuration held to the disk cache, off the path of updates: a change is
//! swapped in and acknowledged without waiting for a synced file, and changes that come in a
//! burst are written once, the newest, instead of one synced file each.

use std::{
    path::PathBuf,
    sync::{Arc, PoisonError},
    time::Duration,
};

use tokio::sync::{Notify, watch};

use super::held::Shared;
use crate::{cache, pipeline::Chain, state::State};

/// How long a write waits for more changes to go with it.
const COALESCE: Duration = Duration::from_secs(1);

/// Wakes the writer task.
#[derive(Clone, Debug)]
pub(super) struct CacheWriter {
    wake: Arc<Notify>,
}

impl CacheWriter {
    /// Starts the writer of `held` to `dir`; it writes what is held once more when `shutdown`
    /// turns true, then ends.
    pub(super) fn spawn(
        dir: PathBuf,
        held: Shared,
        state: Arc<State>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run(dir, held, state, wake.clone(), shutdown));
        (Self { wake }, task)
    }

    /// What is held changed: write it soon.
    pub(super) fn changed(&self) {
        self.wake.notify_one();
    }
}

async fn run(
    dir: PathBuf,
    held: Shared,
    state: Arc<State>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = wake.notified() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(COALESCE) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }
        write(&dir, &held, &state).await;
        if stopping || *shutdown.borrow() {
            return;
        }
    }
}

/// Writes what is held, unless the cache holds that version already.
async fn write(dir: &std::path::Path, held: &Shared, state: &Arc<State>) {
    let (dir, held, state) = (dir.to_owned(), held.clone(), state.clone());
    let written = tokio::task::spawn_blocking(move || {
        // Encoded under the lock (milliseconds for 10,000 routes); written and synced after.
        let (version, bytes) = {
            let held = held.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(held) = held.as_ref() else { return };
            if state.cached_version() == Some(held.version()) {
                return;
            }
            let keys = state.settings().cache_keys.as_deref();
            match cache::encode(held.snapshot(), keys) {
                Ok(bytes) => (held.version(), bytes),
                Err(error) => {
                    tracing::warn!(%error, "cannot seal the snapshot cache; not written");
                    return;
                }
            }
        };
        match cache::store_encoded(&dir, &bytes) {
            Ok(()) => state.set_cached_version(version),
            Err(error) => tracing::warn!(error = %Chain(&error), "cannot write the snapshot cache"),
        }
    })
    .await;
    if let Err(error) = written {
        tracing::warn!(%error, "the snapshot cache writer failed");
    }
}
