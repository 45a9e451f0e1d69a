//! The path-confusion corpus: what a backend might resolve to `/admin` must not get past
//! `/admin`'s route, which denies everyone.

use super::{cases::Case, cases::case, clients::Protocol};

/// `..`, `%2e%2e`, `%2f`, `\`, `..%5c`, `;`, `%00`, overlong UTF-8, double encoding: none of
/// them may reach the admin backend, which its route denies to everyone.
pub(crate) fn path_confusion() -> Vec<Case> {
    let corpus = [
        "/public/../admin",
        "/public/../admin/",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/%2e./admin",
        "/public/..%2fadmin",
        "/public/%2fadmin",
        "/public%2f..%2fadmin",
        "/public/..%5cadmin",
        "/public/..%5Cadmin",
        "/public\\..\\admin",
        "/public/..\\admin",
        "/public/..;/admin",
        "/public/.;/../admin",
        "/public/;/../admin",
        "/admin;x",
        "/admin;/x",
        "/public/%00/../admin",
        "/public/..%00/admin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%e0%80%ae%e0%80%ae/admin",
        "/public/%252e%252e/admin",
        "/public/%25%32%65%25%32%65/admin",
        "//admin",
        "/./admin",
        "/public/./../admin",
        "/PUBLIC/../admin",
        "/public/....//admin",
        "/public/%2e%2e%2fadmin",
        "/%61dmin",
        "/public/..%252fadmin",
    ];
    corpus
        .iter()
        .map(|path| {
            let mut c = case(&format!("path confusion {path:?}"), "GET", path);
            c.never = Some("admin");
            // Not every such path is a URI an HTTP/2 client will send; HTTP/1 carries all.
            if http::Uri::try_from(format!("http://example.com{path}")).is_err() {
                c.protocols = Protocol::HTTP1.to_vec();
            }
            c
        })
        .collect()
}
