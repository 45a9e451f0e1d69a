//! `gatewayctl apply -f FILE|DIR|- [--wait]`: one `Apply` with every resource of the files.

use std::time::Duration;

use gateway_proto::v1;
use tokio::time::Instant;

use super::{action_name, change_label};
use crate::{
    args::{ApplyArgs, GlobalArgs},
    client::Client,
    error::{ApiError, REJECTED, SUCCESS},
    input,
    output::outln,
};

/// How often `--wait` asks for the data planes' versions.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Prints one line per change (`route/users-api created`, `upstream/users unchanged`), then
/// `applied version N`; with `--wait`, waits for the data planes.
pub(crate) async fn run(global: &GlobalArgs, args: &ApplyArgs) -> anyhow::Result<u8> {
    let resources = input::load_resources(&args.input.files)?;
    let mut client = Client::connect(global).await?;
    let response = client.apply(resources, false).await?;
    for change in &response.changes {
        outln(&format!("{} {}", change_label(change), action_name(change)));
    }
    outln(&format!("applied version {}", response.version));
    if args.wait {
        wait(&mut client, response.version, args.wait_timeout).await
    } else {
        Ok(SUCCESS)
    }
}

/// Where the data planes stand relative to a version.
#[derive(Debug, PartialEq, Eq)]
enum Progress<'a> {
    /// No data plane is connected: nothing to wait for.
    NoneConnected,
    /// Every connected data plane acknowledged the version (or a later one).
    Done { total: usize },
    /// These refused the version (or a later one) and did not acknowledge since.
    Rejected(Vec<&'a v1::DataPlaneStatus>),
    Waiting {
        ready: usize,
        total: usize,
        behind: Vec<&'a v1::DataPlaneStatus>,
    },
}

fn progress(planes: &[v1::DataPlaneStatus], version: i64) -> Progress<'_> {
    if planes.is_empty() {
        return Progress::NoneConnected;
    }
    let rejected: Vec<_> = planes
        .iter()
        .filter(|p| p.nacked_version >= version && p.nacked_version > p.acked_version)
        .collect();
    if !rejected.is_empty() {
        return Progress::Rejected(rejected);
    }
    let behind: Vec<_> = planes
        .iter()
        .filter(|p| p.acked_version < version)
        .collect();
    let total = planes.len();
    if behind.is_empty() {
        Progress::Done { total }
    } else {
        Progress::Waiting {
            ready: total - behind.len(),
            total,
            behind,
        }
    }
}

/// `dp-1 (at version 4)` or `dp-1 (no version acknowledged)`.
fn describe_behind(plane: &v1::DataPlaneStatus) -> String {
    if plane.acked_version > 0 {
        format!("{} (at version {})", plane.id, plane.acked_version)
    } else {
        format!("{} (no version acknowledged)", plane.id)
    }
}

/// An error worth asking again about: the control plane is unavailable or slow.
fn is_transient(error: &anyhow::Error) -> bool {
    error.downcast_ref::<ApiError>().is_some_and(|e| {
        matches!(
            e.code,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        )
    })
}

/// Polls `ListDataPlanes` until every connected data plane has acknowledged `version`.
/// Progress goes to stderr; a rejection or the timeout exits 1.
async fn wait(client: &mut Client, version: i64, timeout: Duration) -> anyhow::Result<u8> {
    let deadline = Instant::now() + timeout;
    let mut shown = None;
    loop {
        let response = match client.list_data_planes().await {
            Ok(response) => response,
            // The control plane restarting or briefly unreachable is no answer about the data
            // planes: keep asking until the deadline.
            Err(error) if is_transient(&error) && Instant::now() < deadline => {
                eprintln!("waiting: {error:#}; retrying");
                tokio::time::sleep(POLL_INTERVAL * 4).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        match progress(&response.data_planes, version) {
            Progress::NoneConnected => {
                eprintln!("no data planes connected; nothing to wait for");
                return Ok(SUCCESS);
            }
            Progress::Done { total } => {
                outln(&format!(
                    "synced: {total}/{total} data planes at version {version}"
                ));
                return Ok(SUCCESS);
            }
            Progress::Rejected(planes) => {
                for plane in planes {
                    eprintln!(
                        "error: data plane {} rejected version {}: {}",
                        plane.id, plane.nacked_version, plane.last_error
                    );
                }
                return Ok(REJECTED);
            }
            Progress::Waiting {
                ready,
                total,
                behind,
            } => {
                if shown != Some((ready, total)) {
                    eprintln!("waiting: {ready}/{total} data planes at version {version}");
                    shown = Some((ready, total));
                }
                if Instant::now() >= deadline {
                    let names: Vec<String> = behind.into_iter().map(describe_behind).collect();
                    eprintln!(
                        "error: timed out after {timeout:?} waiting for version {version}; \
                         behind: {}",
                        names.join(", ")
                    );
                    return Ok(REJECTED);
                }
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(id: &str, acked: i64, nacked: i64) -> v1::DataPlaneStatus {
        v1::DataPlaneStatus {
            id: id.into(),
            acked_version: acked,
            nacked_version: nacked,
            last_error: if nacked > 0 {
                "bad regex".into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn waits_for_every_data_plane() {
        assert_eq!(progress(&[], 5), Progress::NoneConnected);
        let planes = [plane("a", 5, 0), plane("b", 7, 0)];
        assert_eq!(progress(&planes, 5), Progress::Done { total: 2 });
        let planes = [plane("a", 5, 0), plane("b", 3, 0)];
        let Progress::Waiting {
            ready,
            total,
            behind,
        } = progress(&planes, 5)
        else {
            panic!("not waiting");
        };
        assert_eq!((ready, total), (1, 2));
        assert_eq!(describe_behind(behind[0]), "b (at version 3)");
        assert_eq!(
            describe_behind(&plane("c", 0, 0)),
            "c (no version acknowledged)"
        );
    }

    #[test]
    fn only_unavailable_control_planes_are_retried() {
        let error = |code| anyhow::Error::from(ApiError::from(tonic::Status::new(code, "x")));
        assert!(is_transient(&error(tonic::Code::Unavailable)));
        assert!(is_transient(&error(tonic::Code::DeadlineExceeded)));
        assert!(!is_transient(&error(tonic::Code::Unauthenticated)));
        assert!(!is_transient(&anyhow::anyhow!("something else")));
    }

    #[test]
    fn a_nack_of_the_version_or_later_is_a_rejection() {
        let planes = [plane("a", 5, 0), plane("b", 3, 5)];
        let Progress::Rejected(rejected) = progress(&planes, 5) else {
            panic!("not rejected");
        };
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].id, "b");
        // An older refusal, or one acknowledged past since, does not count.
        let planes = [plane("a", 5, 4), plane("b", 6, 5)];
        assert_eq!(progress(&planes, 5), Progress::Done { total: 2 });
    }
}
