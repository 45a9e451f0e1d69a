//! Exit codes, and the errors that decide them.
//!
//! Commands return `anyhow::Error`; the leaves attach a typed error ([`UsageError`],
//! [`ApiError`]) that [`exit_code`] finds anywhere in the chain. Anything else exits 1.

use std::fmt;

/// The command did what was asked.
pub(crate) const SUCCESS: u8 = 0;
/// The server (or the offline validator) rejected the request, or it could not be sent.
pub(crate) const REJECTED: u8 = 1;
/// Bad flags, an unknown kind, an unreadable file.
pub(crate) const USAGE: u8 = 2;
/// `diff --exit-code` found changes.
pub(crate) const CHANGES: u8 = 3;

/// A mistake in how gatewayctl was invoked: exit 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An error status from the admin API. Its message names the resource and the field.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: tonic::Code,
    pub(crate) message: String,
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let message = if status.message().is_empty() {
            status.code().description().to_owned()
        } else {
            status.message().to_owned()
        };
        ApiError {
            code: status.code(),
            message,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if self.code == tonic::Code::Unauthenticated {
            f.write_str(" (check --token, --token-file or GATEWAY_ADMIN_TOKEN)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The exit code of a gRPC status: every error status is a rejected request.
pub(crate) fn status_exit_code(code: tonic::Code) -> u8 {
    match code {
        tonic::Code::Ok => SUCCESS,
        // Validation, not found, still referenced, version conflict, already exists, auth,
        // store or server unreachable, and anything else the server refuses.
        _ => REJECTED,
    }
}

/// The exit code of a failed command.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return USAGE;
        }
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return status_exit_code(api.code);
        }
    }
    REJECTED
}

/// Prints a failed command's error to stderr, every line prefixed with `error: `.
pub(crate) fn report(err: &anyhow::Error) {
    let text = format!("{err:#}");
    for line in text.lines() {
        eprintln!("error: {line}");
    }
}

/// A usage error, for `?` and `map_err`.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_error_status_is_a_rejected_request() {
        assert_eq!(status_exit_code(Code::Ok), SUCCESS);
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::AlreadyExists,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Unimplemented,
        ] {
            assert_eq!(status_exit_code(code), REJECTED, "{code:?}");
        }
    }

    #[test]
    fn finds_the_typed_error_in_the_chain() {
        let api: anyhow::Error =
            ApiError::from(tonic::Status::not_found("Route/x: not found")).into();
        assert_eq!(exit_code(&api), REJECTED);
        assert_eq!(api.to_string(), "Route/x: not found");
        let usage = usage("unknown kind").context("get");
        assert_eq!(exit_code(&usage), USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), REJECTED);
    }

    #[test]
    fn an_empty_status_message_falls_back_to_the_code() {
        let api = ApiError::from(tonic::Status::new(Code::Unavailable, ""));
        assert!(!api.message.is_empty());
        let auth = ApiError::from(tonic::Status::unauthenticated("missing token"));
        assert!(auth.to_string().starts_with("missing token"));
    }
}
