//! The admin API's errors, mapped to gRPC statuses in one place (see `docs/architecture.md`).

use gateway_proto::{ResourceKind, ValidationErrors};
use tonic::{Code, Status};

use crate::store::StoreError;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request itself is malformed (a resource without spec, a missing kind or name).
    #[error("{0}")]
    InvalidArgument(String),
    /// The configuration with the request applied does not validate.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// Get or delete of a resource that does not exist.
    #[error("{kind}/{name} not found")]
    NotFound {
        /// Its kind.
        kind: ResourceKind,
        /// Its name.
        name: String,
    },
    /// Delete of a resource that others still refer to.
    #[error("{kind}/{name} is still referred to by {}; change or delete them first", .by.join(", "))]
    StillReferenced {
        /// The resource to delete.
        kind: ResourceKind,
        /// Its name.
        name: String,
        /// The referring resources and fields, e.g. `Route/api (spec.rules[0].backendRefs[0].name)`.
        by: Vec<String>,
    },
    /// A non-zero `version` in the request no longer matches the stored resource.
    #[error(
        "{kind}/{name}: version {expected} does not match the stored version {actual} \
         (0: absent); read it again and retry"
    )]
    VersionMismatch {
        /// Its kind.
        kind: ResourceKind,
        /// Its name.
        name: String,
        /// The version the request expected.
        expected: i64,
        /// The stored version (0 when absent).
        actual: i64,
    },
    /// Concurrent writers won every attempt.
    #[error("the configuration kept changing under {attempts} attempts to write it; try again")]
    Contended {
        /// How many times the write was tried.
        attempts: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AdminError> for Status {
    fn from(error: AdminError) -> Self {
        let code = match &error {
            AdminError::InvalidArgument(_)
            | AdminError::Invalid(_)
            | AdminError::Store(StoreError::TooLarge(_)) => Code::InvalidArgument,
            AdminError::NotFound { .. } => Code::NotFound,
            AdminError::StillReferenced { .. } => Code::FailedPrecondition,
            AdminError::VersionMismatch { .. } | AdminError::Contended { .. } => Code::Aborted,
            AdminError::Store(StoreError::Conflict { .. }) => Code::Aborted,
            AdminError::Store(StoreError::Unavailable(_) | StoreError::Compacted { .. }) => {
                Code::Unavailable
            }
            AdminError::Store(
                StoreError::Internal(_) | StoreError::Open(_) | StoreError::InvalidOp(_),
            ) => {
                // Internal detail goes to the log, not to the client.
                tracing::error!(error = %error, "admin request failed in the store");
                return Status::internal(
                    "internal error in the configuration store; see the control-plane log",
                );
            }
        };
        Status::new(code, error.to_string())
    }
}
