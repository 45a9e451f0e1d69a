//! Upstream resilience: passive ejection and active health checks, panic mode, the circuit
//! breaker, and the consistent-hash and least-request balancers, through standalone data
//! planes reading one config file.
//!
//! Steady load is sequential GETs over one keep-alive connection, every answer recorded
//! ([`Load`]); the tests wait on what the answers show, never on time, and print their counts.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use integration_tests::{
    DataPlane, DataPlaneOpts, HttpResponse, KeepAlive, eventually, write_file,
};
use tempfile::TempDir;

#[path = "resilience/backend.rs"]
mod backend;
#[path = "resilience/balance.rs"]
mod balance;
#[path = "resilience/breaker.rs"]
mod breaker;
#[path = "resilience/health.rs"]
mod health;
#[path = "resilience/mirror.rs"]
mod mirror;
#[path = "resilience/retry.rs"]
mod retry;

/// Active checks every 0.2 s (the validator's floor is 0.1 s), one verdict enough each way.
const ACTIVE: &str = "    active: { path: /healthz, interval: 0.2s, timeout: 0.1s, healthyThreshold: 1, unhealthyThreshold: 1 }\n";

/// `count` standalone data planes serving one config file.
struct Gateway {
    dps: Vec<DataPlane>,
    file: PathBuf,
    _dir: TempDir,
}

impl Gateway {
    async fn start(config: &str, count: usize) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        write_file(&file, config);
        let mut dps = Vec::new();
        for _ in 0..count {
            let dp = DataPlane::start(DataPlaneOpts::standalone(&file)).await;
            dp.wait_ready().await;
            dps.push(dp);
        }
        Gateway {
            dps,
            file,
            _dir: dir,
        }
    }

    fn dp(&self) -> &DataPlane {
        &self.dps[0]
    }

    /// Rewrites the file; the data planes reload it on their own.
    fn rewrite(&self, config: &str) {
        write_file(&self.file, config);
    }
}

/// One answer: the status and who gave it (the backend's name for its echo, the gateway's
/// error code for its errors, the error for a failed exchange with status 0).
#[derive(Clone, Debug)]
struct Sample {
    status: u16,
    from: String,
}

impl Sample {
    fn of(response: &HttpResponse) -> Sample {
        let json = response.json().unwrap_or_default();
        let from = json["backend"]
            .as_str()
            .or_else(|| json["error"]["code"].as_str())
            .map_or_else(|| response.text(), str::to_owned);
        Sample {
            status: response.status,
            from,
        }
    }

    fn ok(&self) -> bool {
        self.status == 200
    }

    fn is(&self, backend: &str) -> bool {
        self.ok() && self.from == backend
    }
}

/// Counts of `status from` over `samples`, for messages.
fn tally(samples: &[Sample]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for s in samples {
        *counts
            .entry(format!("{} {}", s.status, s.from))
            .or_default() += 1;
    }
    counts
}

/// Where the first run of `n` samples that are all `good` starts.
fn streak(samples: &[Sample], n: usize, good: impl Fn(&Sample) -> bool) -> Option<usize> {
    let mut run = 0;
    for (i, s) in samples.iter().enumerate() {
        run = if good(s) { run + 1 } else { 0 };
        if run == n {
            return Some(i + 1 - n);
        }
    }
    None
}

/// Sequential GETs of one URL over one keep-alive connection until stopped, every answer kept.
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(url: String) -> Load {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(send(url, samples.clone(), stop.clone()));
        Load {
            samples,
            stop,
            task,
        }
    }

    /// How many answers so far: a position to look from.
    fn mark(&self) -> usize {
        self.samples.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> Vec<Sample> {
        self.samples.lock().unwrap()[mark..].to_vec()
    }

    /// Waits until `check` accepts the answers since `mark`.
    async fn wait<T>(
        &self,
        what: &str,
        mark: usize,
        check: impl Fn(&[Sample]) -> anyhow::Result<T>,
    ) -> T {
        eventually(what, || {
            let result = check(&self.since(mark));
            async move { result }
        })
        .await
    }

    /// Waits until the last `n` answers (since `mark`) all come from the backends of `names`,
    /// every one of them answering at least one.
    async fn wait_spread(&self, what: &str, mark: usize, n: usize, names: &[&str]) {
        self.wait(what, mark, |samples| {
            let last = &samples[samples.len().saturating_sub(n)..];
            anyhow::ensure!(last.len() == n, "{} answers so far", last.len());
            let counts = tally(last);
            anyhow::ensure!(
                last.iter().all(|s| names.iter().any(|name| s.is(name)))
                    && names.iter().all(|name| last.iter().any(|s| s.is(name))),
                "last {n}: {counts:?}"
            );
            Ok(())
        })
        .await;
    }

    async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task panicked");
        Arc::try_unwrap(self.samples)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|shared| shared.lock().unwrap().clone())
    }
}

async fn send(url: String, samples: Arc<Mutex<Vec<Sample>>>, stop: Arc<AtomicBool>) {
    let client = KeepAlive::default();
    while !stop.load(Ordering::Relaxed) {
        let sample = match client.get(&url).await {
            Ok(response) => Sample::of(&response),
            Err(error) => Sample {
                status: 0,
                from: format!("{error:#}"),
            },
        };
        samples.lock().unwrap().push(sample);
    }
}
