//! `Admin.Register` and `Admin.ListServices`: service instances in the registry.
//!
//! A registration lives as long as its stream: the first message says what to register, the
//! control plane writes it on a lease of its TTL, and renews the lease each time the holder
//! sends a keep-alive, so the TTL holds end to end: a holder that dies, hangs or is cut off is
//! gone within its TTL whatever happens to this stream. A stream closed cleanly deregisters at
//! once. A control plane that shuts down ends the stream without deregistering: the instance
//! still lives, and its holder registers again elsewhere before the lease runs out.

use std::{sync::Arc, time::Duration};

use gateway_proto::{
    registry::{self, InstanceValue},
    v1::{
        ListServicesRequest, ListServicesResponse, RegisterRequest, RegisterResponse,
        RegisteredInstance, register_request::Message,
    },
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::AdminError;
use crate::{
    shutdown::Shutdown,
    store::{InstanceLease, Registration, Store},
};

/// The stream of answers of one registration.
pub(super) type Answers = ReceiverStream<Result<RegisterResponse, Status>>;

/// How long the first message may take.
const FIRST_MESSAGE: Duration = Duration::from_secs(10);

/// Reads the registration, writes it, and leaves a task holding it for the stream's life.
pub(super) async fn register(
    store: &Arc<dyn Store>,
    shutdown: Option<Shutdown>,
    mut inbound: Streaming<RegisterRequest>,
) -> Result<Answers, AdminError> {
    let first = tokio::time::timeout(FIRST_MESSAGE, inbound.message())
        .await
        .map_err(|_| {
            AdminError::InvalidArgument(format!("no register message within {FIRST_MESSAGE:?}"))
        })?;
    let registration = match first {
        Ok(Some(RegisterRequest {
            message: Some(Message::Register(registration)),
        })) => registration,
        Ok(_) => {
            return Err(AdminError::InvalidArgument(
                "the first message must be register".into(),
            ));
        }
        Err(status) => {
            return Err(AdminError::InvalidArgument(format!(
                "the stream failed before register: {}",
                status.message()
            )));
        }
    };
    let checked = registry::check_registration(&registration)
        .map_err(|e| AdminError::InvalidArgument(format!("register.{e}")))?;
    let lease = store
        .register_instance(Registration {
            service: checked.service.clone(),
            id: checked.id.clone(),
            value: checked.value.encode(),
            ttl: checked.ttl,
        })
        .await?;
    tracing::info!(
        key = lease.key(),
        address = %checked.value.address,
        weight = checked.value.weight,
        ttl = ?lease.ttl(),
        "instance registered"
    );
    let (tx, rx) = mpsc::channel(4);
    // Room for it: nothing was sent yet.
    let _ = tx.try_send(Ok(answer(lease.as_ref())));
    tokio::spawn(hold(lease, inbound, tx, shutdown));
    Ok(ReceiverStream::new(rx))
}

fn answer(lease: &dyn InstanceLease) -> RegisterResponse {
    RegisterResponse {
        key: lease.key().to_owned(),
        ttl: prost_types::Duration::try_from(lease.ttl()).ok(),
    }
}

/// Renews the lease on each keep-alive until the stream ends.
async fn hold(
    mut lease: Box<dyn InstanceLease>,
    mut inbound: Streaming<RegisterRequest>,
    tx: mpsc::Sender<Result<RegisterResponse, Status>>,
    shutdown: Option<Shutdown>,
) {
    let key = lease.key().to_owned();
    let mut shutdown = shutdown;
    loop {
        let message = tokio::select! {
            () = wait(&mut shutdown) => {
                tracing::info!(%key, "control plane shutting down: the instance's lease runs out unless its holder registers again");
                let _ = tx.try_send(Err(Status::unavailable("the control plane is shutting down; register again")));
                return;
            }
            message = inbound.message() => message,
        };
        match message {
            Ok(Some(RegisterRequest {
                message: Some(Message::KeepAlive(_)),
            })) => match lease.keep_alive().await {
                // Never waits for a holder that does not read its answers: that would stop
                // this task from hearing keep-alives and shutdown.
                Ok(()) => match tx.try_send(Ok(answer(lease.as_ref()))) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        tracing::debug!(%key, "the holder stopped reading its answers");
                    }
                },
                // The next keep-alive tries again; the lease has the rest of its TTL.
                Err(error) => tracing::warn!(%key, %error, "could not renew an instance's lease"),
            },
            Ok(Some(_)) => tracing::warn!(%key, "ignoring a second register on one stream"),
            Ok(None) => {
                match lease.deregister().await {
                    Ok(()) => tracing::info!(%key, "instance deregistered"),
                    Err(error) => {
                        tracing::warn!(%key, %error, "could not deregister an instance; its lease runs out on its own");
                    }
                }
                // Ending the answers tells the holder the deregistration is done.
                return;
            }
            Err(status) => {
                tracing::info!(%key, ttl = ?lease.ttl(), reason = %status.message(), "the holder's stream broke: its lease runs out within the TTL");
                return;
            }
        }
    }
}

async fn wait(shutdown: &mut Option<Shutdown>) {
    match shutdown {
        Some(shutdown) => shutdown.wait().await,
        None => std::future::pending().await,
    }
}

/// Every valid instance in the store (or of one service), by service then id.
pub(super) async fn list(
    store: &Arc<dyn Store>,
    request: ListServicesRequest,
) -> Result<ListServicesResponse, AdminError> {
    let listing = store.list_instances().await?;
    let instances = listing
        .instances
        .into_iter()
        .filter(|i| request.service.is_empty() || i.service == request.service)
        .filter_map(|i| match InstanceValue::decode(&i.value) {
            Ok(value) => Some(RegisteredInstance {
                service: i.service,
                id: i.id,
                address: value.address,
                weight: value.weight,
            }),
            Err(error) => {
                tracing::debug!(service = %i.service, id = %i.id, %error, "not listing a registry entry");
                None
            }
        })
        .collect();
    Ok(ListServicesResponse { instances })
}
