//! One row of the behaviour table: the request, what must happen, and the check.

use std::borrow::Cow;

use super::{
    backend::Seen,
    clients::{Protocol, Request, Response},
};

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) request: Request,
    status: u16,
    /// The JSON error code the gateway answers with.
    code: Option<&'static str>,
    /// The backend that must get the request; `None`: no backend may.
    backend: Option<&'static str>,
    /// The target the backend must see.
    target: Option<String>,
    /// Headers at the backend: `Some(v)` exactly once with value v, `None` absent.
    saw: Vec<(&'static str, Option<&'static str>)>,
    /// Headers at the backend with any value.
    saw_any: Vec<&'static str>,
    /// The body the backend got, as it got it.
    saw_body: Option<&'static [u8]>,
    /// Response headers: `Some(v)` with value v, `None` absent.
    responds: Vec<(&'static str, Option<&'static str>)>,
    /// Any backend but this one may get it (the path-confusion corpus).
    pub(crate) never: Option<&'static str>,
    /// The response body, compared as parsed JSON or as text.
    answer: Option<Answer>,
    /// The gRPC code of a transcoding route's `google.rpc.Status` error body.
    grpc_code: Option<i64>,
}

/// A response body a row expects.
#[derive(Debug)]
enum Answer {
    Json(serde_json::Value),
    Text(&'static str),
}

pub(crate) fn case(name: &str, method: &'static str, target: &str) -> Case {
    Case {
        name: name.to_owned(),
        protocols: Protocol::ALL.to_vec(),
        request: Request {
            method,
            target: target.to_owned(),
            host: "example.com",
            ..Request::default()
        },
        status: 200,
        code: None,
        backend: None,
        target: None,
        saw: Vec::new(),
        saw_any: Vec::new(),
        saw_body: None,
        responds: Vec::new(),
        never: None,
        answer: None,
        grpc_code: None,
    }
}

impl Case {
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.request
            .headers
            .push((name.to_owned(), value.to_owned()));
        self
    }
    pub(crate) fn host(mut self, host: &'static str) -> Self {
        self.request.host = host;
        self
    }
    pub(crate) fn body(mut self, pieces: &[&[u8]], length: bool) -> Self {
        self.request.body = pieces.iter().map(|p| p.to_vec()).collect();
        self.request.length = length;
        self
    }
    pub(crate) fn only(mut self, protocols: &[Protocol]) -> Self {
        self.protocols = protocols.to_vec();
        self
    }
    pub(crate) fn to(mut self, backend: &'static str, target: &str) -> Self {
        self.backend = Some(backend);
        self.target = Some(target.to_owned());
        self
    }
    pub(crate) fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    pub(crate) fn error(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = Some(code);
        self
    }
    pub(crate) fn saw(mut self, name: &'static str, value: &'static str) -> Self {
        self.saw.push((name, Some(value)));
        self
    }
    pub(crate) fn saw_any(mut self, name: &'static str) -> Self {
        self.saw_any.push(name);
        self
    }
    pub(crate) fn saw_body(mut self, body: &'static [u8]) -> Self {
        self.saw_body = Some(body);
        self
    }
    pub(crate) fn not_saw(mut self, name: &'static str) -> Self {
        self.saw.push((name, None));
        self
    }
    pub(crate) fn responds(mut self, name: &'static str, value: &'static str) -> Self {
        self.responds.push((name, Some(value)));
        self
    }
    pub(crate) fn lacks(mut self, name: &'static str) -> Self {
        self.responds.push((name, None));
        self
    }
    /// The response body, as JSON (compared parsed).
    pub(crate) fn json(mut self, body: &str) -> Self {
        let value = serde_json::from_str(body).expect("the row's JSON");
        self.answer = Some(Answer::Json(value));
        self
    }
    /// The response body, byte for byte.
    pub(crate) fn text(mut self, body: &'static str) -> Self {
        self.answer = Some(Answer::Text(body));
        self
    }
    /// A transcoding route's error: `status`, and the `google.rpc.Status` JSON with `code`.
    pub(crate) fn grpc_error(mut self, status: u16, code: i64) -> Self {
        self.status = status;
        self.grpc_code = Some(code);
        self
    }

    /// A row says what plain HTTP gives; in TLS the client's scheme is `https`, and that must
    /// show in the X-Forwarded-Proto the gateway sets (a row wanting `https` has a route set
    /// it, whatever the transport) and wherever a row writes `{scheme}`.
    pub(crate) fn want(name: &str, value: &'static str, tls: bool) -> Cow<'static, str> {
        let scheme = if tls { "https" } else { "http" };
        if name.eq_ignore_ascii_case("x-forwarded-proto") && value == "http" {
            Cow::Borrowed(scheme)
        } else if value.contains("{scheme}") {
            Cow::Owned(value.replace("{scheme}", scheme))
        } else {
            Cow::Borrowed(value)
        }
    }

    /// Compares what happened with what the row says, over TLS or not.
    pub(crate) fn check(&self, got: &Response, seen: &[Seen], tls: bool) -> Result<(), String> {
        if let Some(never) = self.never {
            if let Some(s) = seen.iter().find(|s| s.backend == never) {
                return Err(format!("reached {never} with {:?}", s.target));
            }
            // What another backend got must mean to it what it meant to the gateway: a path
            // already in normal form, so no backend can resolve it somewhere else.
            for s in seen {
                let path = s.target.split('?').next().unwrap_or_default();
                let canonical =
                    gateway_data_plane::normalize::normalize_path(path).is_ok_and(|n| n == path);
                if !canonical || path.starts_with(&format!("/{never}")) {
                    return Err(format!("{} got {:?}", s.backend, s.target));
                }
            }
            return Ok(());
        }
        if got.status != self.status {
            return Err(format!(
                "status {} instead of {}: {:?}",
                got.status,
                self.status,
                String::from_utf8_lossy(&got.body)
            ));
        }
        if got.header("x-request-id").is_none_or(str::is_empty) {
            return Err("no x-request-id in the response".into());
        }
        if let Some(code) = self.code {
            let json: serde_json::Value = serde_json::from_slice(&got.body)
                .map_err(|e| format!("error body is not JSON: {e}"))?;
            let error = &json["error"];
            if error["code"] != code || error["status"] != self.status {
                return Err(format!("error body {json}, wanted code {code}"));
            }
            if error["request_id"].as_str() != got.header("x-request-id") {
                return Err(format!(
                    "error body request_id differs from the header: {json}"
                ));
            }
            if got.header("content-type") != Some("application/json") {
                return Err("error without content-type application/json".into());
            }
        }
        self.check_body(got)?;
        for (name, want) in &self.responds {
            let want = want.map(|v| Self::want(name, v, tls));
            if got.header(name) != want.as_deref() {
                return Err(format!(
                    "response header {name}: {:?}, wanted {want:?}",
                    got.header(name)
                ));
            }
        }
        let Some(backend) = self.backend else {
            if let Some(s) = seen.first() {
                return Err(format!(
                    "{} got {:?} but no backend should have",
                    s.backend, s.target
                ));
            }
            return Ok(());
        };
        let [s] = seen else {
            return Err(format!(
                "{} backends got it, wanted exactly {backend}",
                seen.len()
            ));
        };
        if s.backend != backend {
            return Err(format!("{} got it instead of {backend}", s.backend));
        }
        if let Some(target) = &self.target
            && s.target != *target
        {
            return Err(format!(
                "backend saw target {:?}, wanted {target:?}",
                s.target
            ));
        }
        for (name, want) in &self.saw {
            match want.map(|v| Self::want(name, v, tls)) {
                Some(value) if s.count(name) != 1 || s.header(name) != Some(&value) => {
                    return Err(format!(
                        "backend saw {name}: {:?} x{}, wanted {value:?} once",
                        s.header(name),
                        s.count(name)
                    ));
                }
                None if s.header(name).is_some() => {
                    return Err(format!(
                        "backend saw {name}: {:?}, wanted none",
                        s.header(name)
                    ));
                }
                _ => {}
            }
        }
        for name in &self.saw_any {
            if s.header(name).is_none() {
                return Err(format!("backend did not see {name}"));
            }
        }
        if let Some(body) = self.saw_body
            && s.body != body
        {
            return Err(format!(
                "backend got the body {:?}, wanted {:?}",
                String::from_utf8_lossy(&s.body),
                String::from_utf8_lossy(body)
            ));
        }
        Ok(())
    }

    fn check_body(&self, got: &Response) -> Result<(), String> {
        if let Some(code) = self.grpc_code {
            let json: serde_json::Value = serde_json::from_slice(&got.body)
                .map_err(|e| format!("error body is not JSON: {e}"))?;
            if json["code"] != code || !json["message"].is_string() {
                return Err(format!(
                    "error body {json}, wanted a Status with code {code}"
                ));
            }
            if got.header("content-type") != Some("application/json") {
                return Err("error without content-type application/json".into());
            }
        }
        match &self.answer {
            Some(Answer::Json(want)) => {
                let json: serde_json::Value = serde_json::from_slice(&got.body).map_err(|e| {
                    format!(
                        "body is not JSON ({e}): {:?}",
                        String::from_utf8_lossy(&got.body)
                    )
                })?;
                if json != *want {
                    return Err(format!("body {json}, wanted {want}"));
                }
            }
            Some(Answer::Text(want)) if got.body != want.as_bytes() => {
                return Err(format!(
                    "body {:?}, wanted {want:?}",
                    String::from_utf8_lossy(&got.body)
                ));
            }
            _ => {}
        }
        Ok(())
    }
}
