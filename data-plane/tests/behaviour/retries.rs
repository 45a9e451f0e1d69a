//! The retry rows: `/retried` goes to `flaky`, whose first endpoint answers 503 to everything
//! (unseen by the table) and whose second is `public`; the rule retries 503. Whichever
//! endpoint a request tries first, `public` gets it exactly once, whole, and the client its
//! answer: a request without a body, and one whose body is kept for replay.

use super::cases::{Case, case};

pub(crate) fn all() -> Vec<Case> {
    vec![
        case(
            "retry: a 503 is tried again on another endpoint",
            "GET",
            "/retried/a",
        )
        .to("public", "/retried/a"),
        case(
            "retry: a kept body is sent again, whole",
            "PUT",
            "/retried/b",
        )
        .body(&[b"hello"], true)
        .to("public", "/retried/b")
        .saw("content-length", "5")
        .saw_body(b"hello"),
        case(
            "retry: a POST's kept body too, on a rule that says nonIdempotent",
            "POST",
            "/retried/c",
        )
        .body(&[b"{\"n\":1}"], true)
        .to("public", "/retried/c")
        .saw_body(b"{\"n\":1}"),
    ]
}
