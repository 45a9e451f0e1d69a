//! One published configuration: the snapshot, the keys that changed in the versions before it
//! (so that a data plane holding one of them gets only the difference), and the discovery
//! messages built from it, each encoded once and shared by every stream as `Bytes`.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
};

use bytes::Bytes;
use gateway_proto::{
    ResourceKind, delta,
    v1::{ControlPlaneMessage, Snapshot, control_plane_message::Message},
};
use prost::Message as _;

/// How many versions back a data plane still gets a delta; older ones get the whole snapshot.
pub(crate) const HISTORY_VERSIONS: usize = 64;
/// Past this many changed keys, a delta is no cheaper to build and apply than the snapshot.
pub(crate) const HISTORY_KEYS: usize = 10_000;

/// The keys that took the configuration from `from` to the next version.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) from: i64,
    pub(crate) keys: Box<[(ResourceKind, Box<str>)]>,
}

/// The steps up to a published version, oldest first.
pub(crate) type History = VecDeque<Arc<Step>>;

/// How a message is framed for one data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// A `ControlPlaneMessage` with the snapshot or delta itself (gRPC may compress it).
    Plain,
    /// A `ControlPlaneMessage` whose `packed` field is the message, gzip-compressed once here.
    Packed,
}

/// A message encoded once, by the first stream that needs it.
type Encoded = Arc<tokio::sync::OnceCell<Bytes>>;

/// A configuration as the reflector publishes it.
#[derive(Debug)]
pub struct Published {
    snapshot: Snapshot,
    history: History,
    /// The whole snapshot encoded, in each form: built by the first stream that needs it, on a
    /// blocking thread (10,000 routes take milliseconds), while the others wait without
    /// blocking theirs.
    full: [tokio::sync::OnceCell<Bytes>; 2],
    /// Deltas built (or being built) so far, by base version and form; a handful at most (data
    /// planes are at the previous version, or a few behind).
    deltas: Mutex<Vec<(i64, Form, Encoded)>>,
}

// === impl Published ===

impl Published {
    pub(crate) fn new(snapshot: Snapshot, history: History) -> Self {
        Self {
            snapshot,
            history,
            full: Default::default(),
            deltas: Mutex::new(Vec::new()),
        }
    }

    pub fn version(&self) -> i64 {
        self.snapshot.version
    }

    /// The whole configuration.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// The encoded message with the whole snapshot.
    pub(crate) async fn full(self: &Arc<Self>, form: Form) -> Bytes {
        self.full[form as usize]
            .get_or_init(|| {
                let this = self.clone();
                async move {
                    let encode_whole = move || {
                        let message = ControlPlaneMessage {
                            message: Some(Message::Snapshot(this.snapshot.clone())),
                        };
                        encode(form, message)
                    };
                    match tokio::task::spawn_blocking(encode_whole).await {
                        Ok(bytes) => bytes,
                        Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
                    }
                }
            })
            .await
            .clone()
    }

    /// The encoded delta from `base`, if this configuration still knows what changed since.
    /// Built once per base and form (on a blocking thread: up to 10,000 keys), while the other
    /// streams that need it wait without blocking theirs.
    pub(crate) async fn delta_from(self: &Arc<Self>, base: i64, form: Form) -> Option<Bytes> {
        let start = self.history.iter().position(|step| step.from == base)?;
        let cell = {
            let mut built = self.deltas.lock().unwrap_or_else(PoisonError::into_inner);
            match built.iter().find(|(b, f, _)| *b == base && *f == form) {
                Some((_, _, cell)) => cell.clone(),
                None => {
                    let cell = Arc::new(tokio::sync::OnceCell::new());
                    built.push((base, form, cell.clone()));
                    cell
                }
            }
        };
        let this = self.clone();
        let bytes = cell
            .get_or_init(|| async move {
                let build = move || {
                    let keys = this
                        .history
                        .range(start..)
                        .flat_map(|step| step.keys.iter())
                        .map(|(kind, name)| (*kind, &**name));
                    let delta = delta::select(&this.snapshot, base, keys);
                    let message = ControlPlaneMessage {
                        message: Some(Message::Delta(delta)),
                    };
                    encode(form, message)
                };
                match tokio::task::spawn_blocking(build).await {
                    Ok(bytes) => bytes,
                    Err(panicked) => std::panic::resume_unwind(panicked.into_panic()),
                }
            })
            .await;
        Some(bytes.clone())
    }
}

/// Below this size a message goes unpacked even to a data plane that takes packed ones: gzip
/// would not make it smaller, and unpacking costs the data plane more than reading it.
const PACK_MIN: usize = 1024;

fn encode(form: Form, message: ControlPlaneMessage) -> Bytes {
    let message = match form {
        Form::Packed if message.encoded_len() >= PACK_MIN => ControlPlaneMessage {
            message: Some(Message::Packed(delta::pack(&message))),
        },
        _ => message,
    };
    Bytes::from(message.encode_to_vec())
}

/// The history of the next version: `history` with the step from `from` through `keys`,
/// trimmed to [`HISTORY_VERSIONS`] and [`HISTORY_KEYS`].
pub(crate) fn extend(history: &History, from: i64, keys: Vec<(ResourceKind, Box<str>)>) -> History {
    let mut next = history.clone();
    next.push_back(Arc::new(Step {
        from,
        keys: keys.into(),
    }));
    let mut total: usize = next.iter().map(|step| step.keys.len()).sum();
    while next.len() > HISTORY_VERSIONS || (total > HISTORY_KEYS && !next.is_empty()) {
        if let Some(old) = next.pop_front() {
            total -= old.keys.len();
        }
    }
    next
}
