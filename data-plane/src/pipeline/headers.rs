//! Header names the pipeline and its front ends share.

/// The headers that never cross a hop (RFC 9110 7.6.1), besides those `Connection` names.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];
