//! Standalone mode: serve one resource file and reload it when it changes. The file is polled
//! (metadata every half second, content when the metadata moves), which also works with
//! editors that replace the file instead of writing it in place. A bad edit is logged with
//! every problem's resource and field, and the previous table keeps serving. A changed DNS
//! answer recompiles the upstreams that name it from the file's resources as last served.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use gateway_proto::{
    delta,
    document::{DocumentErrors, parse_documents},
    v1,
    validate::Graph,
};
use tokio::sync::watch;

use crate::{
    state::State,
    table::{CompileError, Source, Table},
};

/// How often the file's metadata is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Why a file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not a valid resource file.
    #[error("{path}: {errors}")]
    Parse {
        path: PathBuf,
        errors: DocumentErrors,
    },
    /// The resources do not validate or compile.
    #[error("{path}: {error}")]
    Compile {
        path: PathBuf,
        #[source]
        error: CompileError,
    },
}

/// The file being served, and what it looked like when last read.
#[derive(Debug)]
pub(crate) struct Watched {
    path: PathBuf,
    stamp: Option<Stamp>,
    hash: u64,
    version: i64,
    polls: u32,
    /// What the table served was compiled from, for the recompiles of new DNS answers; locked
    /// through every compile and swap, so that one never undoes another.
    served: Arc<Mutex<Served>>,
}

/// The resources served (sorted by kind and name), their version and their graph.
#[derive(Debug, Default)]
struct Served {
    version: i64,
    resources: Vec<v1::Resource>,
    graph: Graph,
}

/// Every this many polls the content is read even if the metadata looks the same (two writes
/// within the file system's timestamp granularity leave the same length and time).
const FULL_READ_EVERY: u32 = 4;

/// What changes when a file is written or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

// === impl Watched ===

impl Watched {
    /// Reads, compiles and serves the file once; an error here stops the start-up.
    pub(crate) fn load(path: &Path, state: &State) -> Result<Self, FileError> {
        let stamp = stamp(path);
        let text = read(path)?;
        let mut watched = Self {
            path: path.to_owned(),
            stamp,
            hash: hash(&text),
            version: 0,
            polls: 0,
            served: Arc::default(),
        };
        let served = watched.served.clone();
        let mut served = served.lock().unwrap_or_else(PoisonError::into_inner);
        let (table, resources) = watched.compile(&text, state)?;
        state.install(table);
        *served = Served::new(watched.version, resources);
        drop(served);
        Ok(watched)
    }

    /// The table of `text`, and its resources.
    fn compile(
        &mut self,
        text: &str,
        state: &State,
    ) -> Result<(Table, Vec<v1::Resource>), FileError> {
        let resources = parse_documents(text).map_err(|errors| FileError::Parse {
            path: self.path.clone(),
            errors,
        })?;
        let table = Table::compile(self.version + 1, &resources, Source::File, state.side())
            .map_err(|error| FileError::Compile {
                path: self.path.clone(),
                error,
            })?;
        self.version += 1;
        Ok((table, resources))
    }

    /// Looks at the file once; reloads it if its content changed.
    #[cfg(test)]
    fn poll(&mut self, state: &State) {
        if self.due() {
            self.reload(state);
        }
    }

    /// Whether the content should be read: the metadata moved, or a periodic full read is due.
    /// Cheap (one `stat`), so it runs on the runtime; reading and compiling do not.
    fn due(&mut self) -> bool {
        let stamp = stamp(&self.path);
        self.polls = self.polls.wrapping_add(1);
        if stamp == self.stamp && !self.polls.is_multiple_of(FULL_READ_EVERY) {
            return false;
        }
        self.stamp = stamp;
        // Missing for now (an editor between delete and rename): keep serving.
        stamp.is_some()
    }

    /// Reads the file and, if its content changed, compiles and swaps it in.
    fn reload(&mut self, state: &State) {
        let text = match read(&self.path) {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(error = %crate::pipeline::Chain(&error), "cannot reload the config file");
                return;
            }
        };
        let hash = hash(&text);
        if hash == self.hash {
            return;
        }
        self.hash = hash;
        let served = self.served.clone();
        let mut served = served.lock().unwrap_or_else(PoisonError::into_inner);
        match self.compile(&text, state) {
            Ok((table, resources)) => {
                let (routes, version) = (table.routes(), table.version());
                state.install(table);
                *served = Served::new(version, resources);
                tracing::info!(file = %self.path.display(), version, routes, "config file reloaded");
            }
            Err(error) => {
                state.metrics().rejected();
                log_problems(&error);
                tracing::warn!(file = %self.path.display(), "config file rejected; keeping the previous configuration");
            }
        }
    }
}

/// Polls the file until `shutdown` turns true.
pub(crate) async fn watch(
    mut watched: Watched,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let served = watched.served.clone();
    let names = tokio::spawn(crate::recompile::on_dns_changes(
        state.clone(),
        shutdown.clone(),
        move |state: &State| {
            let mut served = served.lock().unwrap_or_else(PoisonError::into_inner);
            let served = &mut *served;
            crate::recompile::refresh_names(
                state,
                served.version,
                &served.resources,
                &mut served.graph,
            );
        },
    ));
    // The file's own loop; the names' task ends with it.
    let _names = AbortOnDrop(names);
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = interval.tick() => {}
        }
        if !watched.due() {
            continue;
        }
        let state = state.clone();
        watched = match tokio::task::spawn_blocking(move || {
            watched.reload(&state);
            watched
        })
        .await
        {
            Ok(watched) => watched,
            Err(error) => {
                tracing::error!(%error, "the config file watcher failed");
                return;
            }
        };
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// === impl Served ===

impl Served {
    /// `resources` as served at `version`, sorted as the incremental check needs them.
    fn new(version: i64, mut resources: Vec<v1::Resource>) -> Self {
        delta::sort(&mut resources);
        let graph = Graph::of(&resources);
        Self {
            version,
            resources,
            graph,
        }
    }
}

/// Logs each problem of a rejected file on its own line, naming the resource and the field.
pub fn log_problems(error: &FileError) {
    match error {
        FileError::Read { .. } => {
            tracing::warn!(error = %crate::pipeline::Chain(error), "config file problem");
        }
        FileError::Parse { path, errors } => {
            for e in &errors.0 {
                tracing::warn!(
                    file = %path.display(),
                    document = e.document,
                    resource = e.resource.as_deref().unwrap_or(""),
                    field = %e.field,
                    "{}",
                    e.message
                );
            }
        }
        FileError::Compile {
            path,
            error: CompileError::Invalid(errors),
        } => {
            for e in &errors.0 {
                tracing::warn!(
                    file = %path.display(),
                    resource = %format_args!("{}/{}", e.kind, e.name),
                    field = %e.field,
                    "{}",
                    e.message
                );
            }
        }
    }
}

fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

fn hash(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests;
