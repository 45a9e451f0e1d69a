//! The admin API (`gateway.v1.Admin`): validated, optimistic writes and reads of the config.
//!
//! Every write reads the config at version V, validates the whole graph with the change applied
//! and commits guarded by "the version is still V". A lost race is retried (re-read,
//! re-validate) a few times with a jittered backoff before the request fails with `ABORTED`.
//! Reads come from the store itself, so a client reads its own writes. Service instances are
//! registered and listed by [`register`]: they are not configuration.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use gateway_proto::{
    RegexCache, ResourceKind,
    v1::{
        self, ApplyRequest, ApplyResponse, DeleteRequest, DeleteResponse, GetRequest,
        ListDataPlanesRequest, ListDataPlanesResponse, ListRequest, ListResponse,
        ListServicesRequest, ListServicesResponse, RegisterRequest, Resource, change::Action,
    },
    validate::{Graph, redact},
};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    backoff::Backoff,
    metrics::Metrics,
    reflector::Reflector,
    shutdown::Shutdown,
    store::{Op, Store, StoreError},
};

mod error;
mod plan;
mod register;

pub use error::AdminError;
use plan::{Batch, plan_apply, plan_delete};

/// How many times a write is tried against concurrent writers.
const MAX_ATTEMPTS: usize = 10;

/// The `Admin` service.
#[derive(Clone, Debug)]
pub struct AdminService {
    store: Arc<dyn Store>,
    reflector: Reflector,
    metrics: Arc<Metrics>,
    /// Compiled patterns of the configs validated so far, so that an apply does not compile
    /// every regular expression of the whole config again.
    regexes: Arc<RegexCache>,
    /// The match-key graph of the last configuration this service validated and wrote, with
    /// its version: an apply on top of it is checked in proportion to its change.
    graph: Arc<Mutex<Option<(i64, Graph)>>>,
    /// Ends the registrations' streams (none: they end with their holders only).
    shutdown: Option<Shutdown>,
}

/// Past this many cached patterns (patterns of deleted routes and dry runs pile up), the cache
/// starts over.
const MAX_CACHED_REGEXES: usize = 100_000;

// === impl AdminService ===

impl AdminService {
    fn regexes(&self) -> &RegexCache {
        if self.regexes.len() > MAX_CACHED_REGEXES {
            self.regexes.retain(|_| false);
        }
        &self.regexes
    }

    /// An admin service writing to `store`.
    pub fn new(store: Arc<dyn Store>, reflector: Reflector, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            reflector,
            metrics,
            regexes: Arc::default(),
            graph: Arc::default(),
            shutdown: None,
        }
    }

    /// Registrations' streams end on `shutdown`, leaving their instances to their leases.
    #[must_use]
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// The graph of the configuration at `version`, if this service wrote it last. Taken: an
    /// apply moves it to its own result, which is only the store's if its commit succeeds.
    fn take_graph(&self, version: i64) -> Option<Graph> {
        let mut graph = self.graph.lock().unwrap_or_else(PoisonError::into_inner);
        match graph.take() {
            Some((at, graph)) if at == version => Some(graph),
            _ => None,
        }
    }

    fn keep_graph(&self, version: i64, graph: Graph) {
        *self.graph.lock().unwrap_or_else(PoisonError::into_inner) = Some((version, graph));
    }

    /// Creates or updates every resource of the request in one transaction.
    ///
    /// Private keys are written, never read back: every resource this API returns (reads, and
    /// the before and after of a change) has them redacted.
    pub async fn apply_resources(
        &self,
        mut resources: Vec<Resource>,
        dry_run: bool,
    ) -> Result<ApplyResponse, AdminError> {
        // A certificate is refused when written expired, never for expiring while stored; an
        // API key too short to be a secret, before it becomes a hash.
        gateway_proto::validate::check_written(&resources, std::time::SystemTime::now())?;
        // API keys are stored as hashes only: the plain text never reaches the store.
        resources
            .iter_mut()
            .for_each(gateway_proto::api_key::hash_keys);
        let batch = Batch::parse(resources)?;
        let mut backoff = retry_backoff();
        for _ in 0..MAX_ATTEMPTS {
            let listing = self.store.list().await?;
            let graph = self.take_graph(listing.version);
            let mut plan = plan_apply(&listing, &batch, self.regexes(), graph)?;
            if plan.ops.is_empty() || dry_run {
                if plan.ops.is_empty() {
                    self.keep_graph(listing.version, plan.graph);
                }
                return Ok(ApplyResponse {
                    version: listing.version,
                    changes: redacted_changes(plan.changes),
                });
            }
            match self.store.commit(listing.version, plan.ops).await {
                Ok(version) => {
                    self.keep_graph(version, plan.graph);
                    for change in &mut plan.changes {
                        let action = Action::try_from(change.action).unwrap_or(Action::Unchanged);
                        if action == Action::Unchanged {
                            continue;
                        }
                        if let Some(after) = &mut change.after {
                            after.version = version;
                        }
                        tracing::info!(
                            kind = %kind_name(change.kind),
                            name = %change.name,
                            action = action.as_str_name(),
                            version,
                            "configuration written"
                        );
                    }
                    return Ok(ApplyResponse {
                        version,
                        changes: redacted_changes(plan.changes),
                    });
                }
                Err(StoreError::Conflict { .. }) => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AdminError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Deletes one resource, unless others still refer to it. Returns the new version.
    pub async fn delete_resource(&self, kind: ResourceKind, name: &str) -> Result<i64, AdminError> {
        let mut backoff = retry_backoff();
        for _ in 0..MAX_ATTEMPTS {
            let listing = self.store.list().await?;
            plan_delete(&listing, kind, name, self.regexes())?;
            let ops = vec![Op::Delete(kind, name.to_owned())];
            match self.store.commit(listing.version, ops).await {
                Ok(version) => {
                    tracing::info!(%kind, name, action = "DELETED", version, "configuration written");
                    return Ok(version);
                }
                Err(StoreError::Conflict { .. }) => {
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AdminError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn get_resource(&self, request: GetRequest) -> Result<Resource, AdminError> {
        let kind = parse_kind(request.kind)?;
        require_name(&request.name)?;
        let listing = self.store.list().await?;
        listing
            .resources
            .into_iter()
            .find(|r| r.name == request.name && ResourceKind::of(r) == Some(kind))
            .map(|mut r| {
                redact(&mut r);
                r
            })
            .ok_or(AdminError::NotFound {
                kind,
                name: request.name,
            })
    }

    async fn list_resources(&self, request: ListRequest) -> Result<ListResponse, AdminError> {
        let kind = match v1::Kind::try_from(request.kind) {
            Ok(v1::Kind::Unspecified) => None,
            _ => Some(parse_kind(request.kind)?),
        };
        let listing = self.store.list().await?;
        // The listing is sorted by kind, then name.
        let resources = listing
            .resources
            .into_iter()
            .filter(|r| kind.is_none() || ResourceKind::of(r) == kind)
            .map(|mut r| {
                redact(&mut r);
                r
            })
            .collect();
        Ok(ListResponse {
            version: listing.version,
            resources,
        })
    }

    async fn data_planes(&self) -> Result<ListDataPlanesResponse, AdminError> {
        let data_planes = self.store.list_dataplanes().await?;
        let version = match self.reflector.current() {
            Some(published) => published.version(),
            None => self.store.list().await?.version,
        };
        Ok(ListDataPlanesResponse {
            version,
            data_planes,
        })
    }

    fn finish<T>(
        &self,
        method: &'static str,
        result: Result<T, AdminError>,
    ) -> Result<Response<T>, Status> {
        let result = result.map(Response::new).map_err(Status::from);
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.admin_request(method, code);
        if let Err(status) = &result {
            tracing::debug!(method, code = ?status.code(), message = status.message(), "admin request refused");
        }
        result
    }
}

#[tonic::async_trait]
impl v1::admin_server::Admin for AdminService {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let request = request.into_inner();
        let result = self
            .apply_resources(request.resources, request.dry_run)
            .await;
        self.finish("Apply", result)
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<Resource>, Status> {
        let result = self.get_resource(request.into_inner()).await;
        self.finish("Get", result)
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let result = self.list_resources(request.into_inner()).await;
        self.finish("List", result)
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let request = request.into_inner();
        let result = async {
            let kind = parse_kind(request.kind)?;
            require_name(&request.name)?;
            let version = self.delete_resource(kind, &request.name).await?;
            Ok(DeleteResponse { version })
        }
        .await;
        self.finish("Delete", result)
    }

    async fn list_data_planes(
        &self,
        _request: Request<ListDataPlanesRequest>,
    ) -> Result<Response<ListDataPlanesResponse>, Status> {
        let result = self.data_planes().await;
        self.finish("ListDataPlanes", result)
    }

    type RegisterStream = register::Answers;

    async fn register(
        &self,
        request: Request<Streaming<RegisterRequest>>,
    ) -> Result<Response<Self::RegisterStream>, Status> {
        let result =
            register::register(&self.store, self.shutdown.clone(), request.into_inner()).await;
        self.finish("Register", result)
    }

    async fn list_services(
        &self,
        request: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let result = register::list(&self.store, request.into_inner()).await;
        self.finish("ListServices", result)
    }
}

fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(10), Duration::from_millis(200))
}

fn parse_kind(kind: i32) -> Result<ResourceKind, AdminError> {
    ResourceKind::from_proto(kind).ok_or_else(|| {
        AdminError::InvalidArgument(format!(
            "kind: {kind} is not a resource kind (KIND_UPSTREAM or KIND_ROUTE)"
        ))
    })
}

fn require_name(name: &str) -> Result<(), AdminError> {
    if name.is_empty() {
        return Err(AdminError::InvalidArgument(
            "name: must not be empty".into(),
        ));
    }
    Ok(())
}

fn kind_name(kind: i32) -> &'static str {
    ResourceKind::from_proto(kind).map_or("Resource", ResourceKind::as_str)
}

#[cfg(test)]
mod tests;

/// The changes of an apply as the caller sees them: secrets redacted.
fn redacted_changes(mut changes: Vec<v1::Change>) -> Vec<v1::Change> {
    for change in &mut changes {
        for resource in change.before.iter_mut().chain(change.after.iter_mut()) {
            redact(resource);
        }
    }
    changes
}
