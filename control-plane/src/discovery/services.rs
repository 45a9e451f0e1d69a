//! What a stream sends of the service registry: the whole of it first, then only what changed
//! (the table's shared delta when the stream holds the generation before; the whole again,
//! which the data plane diffs itself, when it skipped some). Only to data planes that said
//! they take it (`FEATURE_SERVICES`).

use bytes::Bytes;

use crate::services::ServicesRx;

pub(super) struct ServicesSent {
    /// `None` for a data plane that does not take them.
    rx: Option<ServicesRx>,
    /// The generation last sent.
    sent: Option<u64>,
}

impl ServicesSent {
    pub(super) fn new(rx: Option<ServicesRx>) -> Self {
        Self { rx, sent: None }
    }

    /// The message to send now, if the registry moved since the last one.
    pub(super) fn due(&mut self) -> Option<Bytes> {
        let table = self.rx.as_mut()?.borrow_and_update().clone()?;
        let generation = table.generation();
        let message = match self.sent {
            Some(sent) if sent == generation => return None,
            Some(sent) if sent + 1 == generation => table.delta_message(),
            _ => table.complete_message(),
        };
        self.sent = Some(generation);
        Some(message)
    }

    /// Resolves when the registry moves (never for a data plane that does not take it, or
    /// once the mirror has stopped: the stream ends on shutdown anyway).
    pub(super) async fn changed(&mut self) {
        let moved = match self.rx.as_mut() {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        };
        if !moved {
            std::future::pending::<()>().await;
        }
    }
}
