//! `gatewayctl register --service NAME --address HOST:PORT [--ttl 10s] [--id ID] [--weight N]`:
//! registers a service instance through the admin API (`Admin.Register`) and holds it.
//!
//! It sends a keep-alive every third of the TTL, which is what renews the lease: if this
//! process dies or hangs, the instance is gone within its TTL. SIGINT or SIGTERM closes the
//! stream cleanly, which deregisters the instance at once, and exits 0 once the control plane
//! has confirmed it. A stream lost after registering (the control plane restarted, the network
//! broke) is opened again with backoff, on the same id, until stopped.

use std::time::Duration;

use anyhow::Context as _;
use gateway_proto::{
    registry,
    v1::{self, RegisterKeepAlive, RegisterRequest, register_request::Message},
};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    args::{GlobalArgs, RegisterArgs},
    client::Client,
    error::{ApiError, SUCCESS, usage},
    output::outln,
};

pub(crate) async fn run(global: &GlobalArgs, args: &RegisterArgs) -> anyhow::Result<u8> {
    let registration = registration(args)?;
    // Before anything is registered: a signal from then on deregisters.
    let mut stop = Stop::install()?;
    let mut held = tokio::select! {
        () = stop.wait() => return Ok(SUCCESS),
        held = Held::open(global, &registration) => held?,
    };
    outln(&format!(
        "registered {} address={} weight={} ttl={:?}",
        held.key, registration.address, args.weight, held.ttl
    ));
    loop {
        let reason = match held.hold(&mut stop).await {
            Ended::Stopped => {
                held.close(global.timeout).await?;
                outln(&format!("deregistered {}", held.key));
                return Ok(SUCCESS);
            }
            Ended::Lost(reason) => reason,
        };
        eprintln!(
            "warning: lost the registration of {} ({reason}); registering again",
            held.key
        );
        let Some(again) = reopen(global, &registration, &mut stop).await? else {
            eprintln!(
                "stopped while not registered: {} runs out within its TTL ({:?})",
                held.key, held.ttl
            );
            return Ok(SUCCESS);
        };
        held = again;
        eprintln!("registered {} again", held.key);
    }
}

/// The registration the flags describe, checked with the control plane's own checks.
fn registration(args: &RegisterArgs) -> anyhow::Result<v1::Registration> {
    let id = args.id.clone().unwrap_or_else(|| default_id(&args.address));
    let registration = v1::Registration {
        service: args.service.clone(),
        id,
        address: args.address.clone(),
        weight: Some(args.weight),
        ttl: prost_types::Duration::try_from(args.ttl).ok(),
    };
    match registry::check_registration(&registration) {
        Ok(_) => Ok(registration),
        Err(registry::RegistryError::Invalid { field, reason }) => {
            Err(usage(format!("--{field}: {reason}")))
        }
        Err(other) => Err(usage(other.to_string())),
    }
}

/// The address, with what an id may not hold (an IPv6 address's brackets) as `-`.
fn default_id(address: &str) -> String {
    address
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// SIGINT and SIGTERM.
struct Stop {
    term: Signal,
    interrupt: Signal,
}

impl Stop {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("handle SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("handle SIGINT")?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// A registration's open stream.
struct Held {
    key: String,
    ttl: Duration,
    requests: Option<mpsc::Sender<RegisterRequest>>,
    answers: tonic::Streaming<v1::RegisterResponse>,
}

/// Why holding stopped.
enum Ended {
    Stopped,
    Lost(String),
}

impl Held {
    /// Registers, and waits for the control plane's answer.
    async fn open(global: &GlobalArgs, registration: &v1::Registration) -> anyhow::Result<Self> {
        let mut client = Client::connect_for_streams(global).await?;
        let (requests, rx) = mpsc::channel(4);
        let first = RegisterRequest {
            message: Some(Message::Register(registration.clone())),
        };
        // Room for it: nothing was sent yet.
        let _ = requests.try_send(first);
        let opening = async {
            let mut answers = client.register(ReceiverStream::new(rx)).await?;
            let answer = answers
                .message()
                .await
                .map_err(crate::client::api)?
                .context("the control plane closed the stream without an answer")?;
            anyhow::Ok((answers, answer))
        };
        let (answers, answer) = tokio::time::timeout(global.timeout, opening)
            .await
            .with_context(|| {
                format!("no answer to the registration within {:?}", global.timeout)
            })??;
        let asked = Duration::try_from(registration.ttl.unwrap_or_default()).unwrap_or_default();
        let ttl = answer
            .ttl
            .and_then(|t| Duration::try_from(t).ok())
            .unwrap_or(asked);
        Ok(Self {
            key: answer.key,
            ttl,
            requests: Some(requests),
            answers,
        })
    }

    /// Keeps the lease alive until a signal, or until the stream is lost.
    async fn hold(&mut self, stop: &mut Stop) -> Ended {
        // Three renewals per TTL: one lost still leaves time for the next.
        let every = (self.ttl / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        let mut heard = Instant::now();
        let Some(requests) = self.requests.clone() else {
            return Ended::Lost("the stream was closed".into());
        };
        loop {
            tokio::select! {
                () = stop.wait() => return Ended::Stopped,
                _ = tick.tick() => {
                    if heard.elapsed() > self.ttl {
                        return Ended::Lost(format!("no answer from the control plane for {:?}", self.ttl));
                    }
                    let alive = RegisterRequest {
                        message: Some(Message::KeepAlive(RegisterKeepAlive {})),
                    };
                    if requests.send(alive).await.is_err() {
                        return Ended::Lost("the stream closed".into());
                    }
                }
                answer = self.answers.message() => match answer {
                    Ok(Some(_)) => heard = Instant::now(),
                    Ok(None) => return Ended::Lost("the control plane ended the stream".into()),
                    Err(status) => return Ended::Lost(ApiError::from(status).to_string()),
                },
            }
        }
    }

    /// Closes the stream, which deregisters, and waits for the control plane to confirm it
    /// (by ending its answers).
    async fn close(&mut self, within: Duration) -> anyhow::Result<()> {
        self.requests = None;
        let confirmed = tokio::time::timeout(within, async {
            loop {
                match self.answers.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(ApiError::from(status)),
                }
            }
        })
        .await;
        match confirmed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(anyhow::Error::new(error).context(format!(
                "deregistering {}; it runs out within its TTL ({:?})",
                self.key, self.ttl
            ))),
            Err(_) => anyhow::bail!(
                "the control plane did not confirm deregistering {} within {within:?}; it runs \
                 out within its TTL ({:?})",
                self.key,
                self.ttl
            ),
        }
    }
}

/// Registers again with backoff until it works (`Some`), a signal comes (`None`), or the
/// control plane refuses the registration itself (the error).
async fn reopen(
    global: &GlobalArgs,
    registration: &v1::Registration,
    stop: &mut Stop,
) -> anyhow::Result<Option<Held>> {
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::select! {
            () = stop.wait() => return Ok(None),
            // Jittered: many holders cut off by one outage do not come back at once.
            () = tokio::time::sleep(delay.mul_f64(0.5 + fastrand::f64() / 2.0)) => {}
        }
        match Held::open(global, registration).await {
            Ok(held) => return Ok(Some(held)),
            Err(error) if refused(&error) => return Err(error),
            Err(error) => eprintln!("warning: registering again: {error:#}"),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A refusal that trying again will not change (a bad registration, a wrong token).
fn refused(error: &anyhow::Error) -> bool {
    use tonic::Code;
    error.chain().any(|cause| {
        cause.downcast_ref::<ApiError>().is_some_and(|api| {
            matches!(
                api.code,
                Code::InvalidArgument
                    | Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::Unimplemented
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{USAGE, exit_code};

    fn args(address: &str, ttl: Duration) -> RegisterArgs {
        RegisterArgs {
            service: "users".into(),
            address: address.into(),
            ttl,
            id: None,
            weight: 1,
        }
    }

    #[test]
    fn the_id_defaults_to_the_address() {
        let registration = registration(&args("127.0.0.1:9001", Duration::from_secs(10))).unwrap();
        assert_eq!(registration.id, "127.0.0.1:9001");
        assert_eq!(default_id("[::1]:80"), "-::1-:80");
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_the_flag() {
        for (args, flag) in [
            (args("localhost", Duration::from_secs(10)), "--address: "),
            (
                args("127.0.0.1:9001", Duration::from_millis(500)),
                "--ttl: ",
            ),
            (args("127.0.0.1:9001", Duration::from_secs(7200)), "--ttl: "),
            (
                RegisterArgs {
                    service: "Users".into(),
                    ..args("127.0.0.1:9001", Duration::from_secs(10))
                },
                "--service: ",
            ),
            (
                RegisterArgs {
                    id: Some("a/b".into()),
                    ..args("127.0.0.1:9001", Duration::from_secs(10))
                },
                "--id: ",
            ),
            (
                RegisterArgs {
                    weight: 10_001,
                    ..args("127.0.0.1:9001", Duration::from_secs(10))
                },
                "--weight: ",
            ),
        ] {
            let error = registration(&args).unwrap_err();
            assert_eq!(exit_code(&error), USAGE);
            assert!(error.to_string().starts_with(flag), "{error}");
        }
    }
}
