//! `--simulated-streams N`: a fleet of N data planes simulated by discovery streams of this
//! process (see the doc comment of `bench-propagation.rs`).
//!
//! Every stream task reports what happens on it (a configuration decoded, an Ack queued, the
//! stream ending) as timestamped events on one channel; the measuring task keeps the version
//! each stream holds and, for each change, the time of the last delivery and the last Ack.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use gateway_proto::{
    delta,
    v1::{
        Ack, ControlPlaneMessage, DataPlaneMessage, Feature, Heartbeat, Hello,
        control_plane_message, data_plane_message, discovery_client::DiscoveryClient,
    },
};
use integration_tests::{ControlPlane, Gatewayctl, applied_version};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    metadata::AsciiMetadataValue,
    transport::{Channel, Endpoint},
};

use crate::{
    change_yaml, ms,
    observe::{ProcStats, clock_ticks, mib, report_log},
    percentile,
};

/// The data-plane token the benchmark gives the control plane and the simulated streams.
pub(crate) const TOKEN: &str = "bench-simulated-data-plane-token";
/// The largest message a stream accepts, decoded or unpacked (as the data plane).
const MAX_MESSAGE_BYTES: usize = 64 << 20;
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Silence after which a stream gives up (the data plane's timeout).
const PEER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long every stream may take to get and ACK its first snapshot.
const FIRST_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long every stream may take to get and ACK a change.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// What to simulate.
pub(crate) struct Opts {
    pub(crate) streams: usize,
    pub(crate) per_connection: usize,
    pub(crate) changes: usize,
    pub(crate) base_routes: usize,
    pub(crate) store: &'static str,
    /// How long the streams stay idle after the first snapshot (heartbeats only).
    pub(crate) idle: Duration,
}

/// Opens the streams, waits for the first snapshot everywhere (`version`, the last version
/// applied), applies the changes one after the other and prints the report.
pub(crate) async fn run(
    cp: &ControlPlane,
    ctl: &Gatewayctl,
    version: i64,
    opts: &Opts,
) -> anyhow::Result<()> {
    let pid = cp
        .process()
        .pid()
        .context("the control plane is not running")?;
    let ticks = clock_ticks();
    let before = ProcStats::read(&pid.to_string(), ticks)?;

    let started = Instant::now();
    let endpoint = Endpoint::from_shared(cp.url())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut channels = Vec::new();
    for _ in 0..opts.streams.div_ceil(opts.per_connection) {
        let channel = endpoint
            .connect()
            .await
            .context("connect to the control plane")?;
        channels.push(channel);
    }
    let (events_tx, events) = mpsc::unbounded_channel();
    // Aborted when dropped, at the end of `run` (or on an error).
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..opts.streams {
        let channel = channels[index / opts.per_connection].clone();
        tasks.spawn(run_stream(index, channel, events_tx.clone()));
    }
    drop(events_tx);
    let mut fleet = Fleet {
        events,
        received: vec![0; opts.streams],
        acked: vec![0; opts.streams],
    };
    let first = fleet
        .wait_for(version, FIRST_SNAPSHOT_TIMEOUT, cp)
        .await
        .context("the first snapshot")?;
    let in_sync = ProcStats::read(&pid.to_string(), ticks)?;
    if opts.idle > Duration::ZERO {
        tokio::time::sleep(opts.idle).await;
        fleet.check_open(cp).context("while idle")?;
    }

    // From `apply` returning, and (an upper bound) from starting it.
    let (mut deliveries, mut acks, mut from_start) = (Vec::new(), Vec::new(), Vec::new());
    let (mut wire, mut unpacked) = (Vec::new(), Vec::new());
    let (mut early, mut messages, mut whole) = (0, 0, 0);
    for i in 0..opts.changes {
        let apply_started = Instant::now();
        let output = ctl.apply_yaml(&change_yaml(i), &[]).await;
        let applied = Instant::now();
        ensure!(output.code == 0, "change {i} failed\n{output}");
        let version = applied_version(&output)
            .with_context(|| format!("no `applied version N` in\n{output}"))?;
        let fanout = fleet
            .wait_for(version, CHANGE_TIMEOUT, cp)
            .await
            .with_context(|| format!("change {i} (version {version})"))?;
        deliveries.push(fanout.last_delivery.saturating_duration_since(applied));
        acks.push(fanout.last_ack.saturating_duration_since(applied));
        from_start.push(
            fanout
                .last_delivery
                .saturating_duration_since(apply_started),
        );
        early += usize::from(fanout.last_delivery < applied);
        wire.push(fanout.wire / opts.streams);
        unpacked.push(fanout.unpacked / opts.streams);
        messages += fanout.messages;
        whole += fanout.whole;
    }
    let end = ProcStats::read(&pid.to_string(), ticks)?;
    let simulator = ProcStats::read("self", ticks)?;

    let (n, c) = (opts.streams, opts.changes);
    let head = format!(
        "simulated_streams={n} base_routes={} changes={c}",
        opts.base_routes
    );
    println!(
        "{head}: initial full snapshot, from opening the streams -> last delivery {:.1} ms, -> \
         last ACK {:.1} ms",
        ms(first.last_delivery.saturating_duration_since(started)),
        ms(first.last_ack.saturating_duration_since(started)),
    );
    for (what, samples) in [
        ("apply returned -> last delivery", &mut deliveries),
        ("apply returned -> last ACK", &mut acks),
        ("apply started -> last delivery", &mut from_start),
    ] {
        samples.sort();
        println!(
            "{head}: {what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(percentile(samples, 0.50)),
            ms(percentile(samples, 0.99)),
            ms(percentile(samples, 1.0)),
        );
    }
    if early > 0 {
        println!(
            "{head}: {early} of {c} changes reached every stream before apply returned (0 ms)"
        );
    }
    if opts.idle > Duration::ZERO {
        println!(
            "{head}: every stream stayed open through {:?} idle",
            opts.idle
        );
    }
    wire.sort_unstable();
    unpacked.sort_unstable();
    let median = |v: &[usize]| v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0);
    println!(
        "{head}: bytes received per stream: first full snapshot {} B ({} B unpacked; {} B for all \
         streams), per change median {} B ({} B unpacked; {} B for all streams); {messages} \
         messages for the changes ({} expected), {whole} of them whole snapshots",
        first.wire / n,
        first.unpacked / n,
        first.wire,
        median(&wire),
        median(&unpacked),
        median(&wire) * n,
        c * n,
    );
    let cpu_ms = |from: &ProcStats, to: &ProcStats| ms(to.cpu.saturating_sub(from.cpu));
    let rss_kib = |from: &ProcStats, to: &ProcStats| to.rss_kib as f64 - from.rss_kib as f64;
    println!(
        "{head}: control plane (store={}, pid {pid}, {} connections): before the streams rss \
         {:.1} MiB cpu {:.2} s; streams open and in sync rss {:.1} MiB ({:+.1} KiB per stream) cpu \
         {:+.0} ms ({:.3} ms per stream); after the changes rss {:.1} MiB ({:+.1} MiB) cpu {:+.0} \
         ms ({:.1} ms per change, {:.1} us per stream per change)",
        opts.store,
        channels.len(),
        mib(before.rss_kib),
        before.cpu.as_secs_f64(),
        mib(in_sync.rss_kib),
        rss_kib(&before, &in_sync) / n as f64,
        cpu_ms(&before, &in_sync),
        cpu_ms(&before, &in_sync) / n as f64,
        mib(end.rss_kib),
        rss_kib(&in_sync, &end) / 1024.0,
        cpu_ms(&in_sync, &end),
        cpu_ms(&in_sync, &end) / c.max(1) as f64,
        cpu_ms(&in_sync, &end) * 1e3 / (n * c.max(1)) as f64,
    );
    println!(
        "{head}: simulator rss {:.1} MiB, cpu {:.2} s",
        mib(simulator.rss_kib),
        simulator.cpu.as_secs_f64()
    );
    report_log(cp);
    Ok(())
}

/// Something that happened on stream `stream`, at `at`.
struct Event {
    stream: usize,
    at: Instant,
    kind: Kind,
}

enum Kind {
    /// A snapshot or delta decoded.
    Received(Received),
    /// An Ack queued on the request stream.
    Acked(i64),
    /// The stream is over, and why.
    Ended(String),
}

/// A snapshot (`whole`) or delta of `version`: `wire` bytes as received (the encoded
/// `ControlPlaneMessage`), `unpacked` once unpacked.
struct Received {
    version: i64,
    wire: usize,
    unpacked: usize,
    whole: bool,
}

/// The measuring side: what each stream holds.
struct Fleet {
    events: mpsc::UnboundedReceiver<Event>,
    received: Vec<i64>,
    acked: Vec<i64>,
}

/// How one version reached the fleet.
#[derive(Default)]
struct Fanout {
    /// The last stream's delivery and Ack of the version (or a newer one).
    last_delivery: Option<Instant>,
    last_ack: Option<Instant>,
    /// Summed over the streams: every snapshot or delta received while waiting.
    wire: usize,
    unpacked: usize,
    messages: usize,
    whole: usize,
}

/// What a measured fan-out took.
struct Reached {
    last_delivery: Instant,
    last_ack: Instant,
    wire: usize,
    unpacked: usize,
    messages: usize,
    whole: usize,
}

impl Fleet {
    /// Waits until every stream has ACKed `version` (or a newer one).
    async fn wait_for(
        &mut self,
        version: i64,
        within: Duration,
        cp: &ControlPlane,
    ) -> anyhow::Result<Reached> {
        let deadline = tokio::time::Instant::now() + within;
        let mut fanout = Fanout::default();
        while self.acked.iter().any(|&acked| acked < version) {
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => bail!("every stream task is gone"),
                Err(_) => {
                    let behind = |held: &[i64]| held.iter().filter(|&&v| v < version).count();
                    bail!(
                        "after {within:?}, {} of {} streams have not received version {version}, \
                         {} have not ACKed it\n{}",
                        behind(&self.received),
                        self.received.len(),
                        behind(&self.acked),
                        cp.process().log_tail()
                    );
                }
            };
            self.record(event, version, &mut fanout, cp)?;
        }
        // `None` only if every stream held `version` already: it reached them before now.
        let now = Instant::now();
        Ok(Reached {
            last_delivery: fanout.last_delivery.unwrap_or(now),
            last_ack: fanout.last_ack.unwrap_or(now),
            wire: fanout.wire,
            unpacked: fanout.unpacked,
            messages: fanout.messages,
            whole: fanout.whole,
        })
    }

    /// Fails if a stream ended since the last look.
    fn check_open(&mut self, cp: &ControlPlane) -> anyhow::Result<()> {
        while let Ok(event) = self.events.try_recv() {
            self.record(event, i64::MAX, &mut Fanout::default(), cp)?;
        }
        Ok(())
    }

    /// Takes in `event`, counting it in `fanout` (of `version`); fails if a stream ended.
    fn record(
        &mut self,
        event: Event,
        version: i64,
        fanout: &mut Fanout,
        cp: &ControlPlane,
    ) -> anyhow::Result<()> {
        match event.kind {
            Kind::Received(received) => {
                self.received[event.stream] = received.version;
                fanout.wire += received.wire;
                fanout.unpacked += received.unpacked;
                fanout.messages += 1;
                fanout.whole += usize::from(received.whole);
                if received.version >= version {
                    fanout.last_delivery = fanout.last_delivery.max(Some(event.at));
                }
            }
            Kind::Acked(acked) => {
                self.acked[event.stream] = acked;
                if acked >= version {
                    fanout.last_ack = fanout.last_ack.max(Some(event.at));
                }
            }
            Kind::Ended(reason) => bail!(
                "stream sim-{} ended: {reason}\n{}",
                event.stream,
                cp.process().log_tail()
            ),
        }
        Ok(())
    }
}

/// One simulated data plane, until its stream ends; then says why.
async fn run_stream(index: usize, channel: Channel, events: mpsc::UnboundedSender<Event>) {
    let reason = match stream(index, channel, &events).await {
        Ok(()) => "the control plane closed the stream".to_owned(),
        Err(error) => format!("{error:#}"),
    };
    let _ = events.send(Event {
        stream: index,
        at: Instant::now(),
        kind: Kind::Ended(reason),
    });
}

async fn stream(
    index: usize,
    channel: Channel,
    events: &mpsc::UnboundedSender<Event>,
) -> anyhow::Result<()> {
    let mut client = DiscoveryClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<DataPlaneMessage>(16);
    let hello = Hello {
        id: format!("sim-{index}"),
        version: 0,
        build_version: env!("CARGO_PKG_VERSION").to_owned(),
        address: String::new(),
        features: vec![Feature::Delta as i32, Feature::Packed as i32],
    };
    tx.try_send(message(data_plane_message::Message::Hello(hello)))
        .context("queue the Hello")?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    let token = AsciiMetadataValue::try_from(format!("Bearer {TOKEN}"))?;
    request.metadata_mut().insert("authorization", token);
    let mut inbound = tokio::time::timeout(PEER_TIMEOUT, client.stream(request))
        .await
        .context("the control plane did not open the stream in time")??
        .into_inner();

    let start = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
    let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT_INTERVAL);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut held = 0;
    loop {
        tokio::select! {
            received = inbound.message() => {
                let Some(received) = received? else {
                    return Ok(());
                };
                last_heard = Instant::now();
                let Some(got) = decode(received, held)? else {
                    continue;
                };
                let version = got.version;
                held = version;
                let at = Instant::now();
                if events.send(Event { stream: index, at, kind: Kind::Received(got) }).is_err() {
                    return Ok(());
                }
                tx.send(message(data_plane_message::Message::Ack(Ack { version })))
                    .await
                    .context("the request stream is closed")?;
                let acked = Event { stream: index, at: Instant::now(), kind: Kind::Acked(version) };
                if events.send(acked).is_err() {
                    return Ok(());
                }
            }
            _ = heartbeat.tick() => {
                let silent = last_heard.elapsed();
                ensure!(silent <= PEER_TIMEOUT, "nothing from the control plane for {silent:?}");
                tx.send(message(data_plane_message::Message::Heartbeat(Heartbeat {})))
                    .await
                    .context("the request stream is closed")?;
            }
        }
    }
}

/// Decodes (and unpacks) a message: what it brings for a snapshot or delta, `None` for a
/// heartbeat. A delta must start from `held`. Nothing of the configuration is kept.
fn decode(received: ControlPlaneMessage, held: i64) -> anyhow::Result<Option<Received>> {
    use control_plane_message::Message;
    let wire = received.encoded_len();
    let (inner, unpacked, packed) = match received.message {
        Some(Message::Packed(bytes)) => {
            let inner = delta::unpack(&bytes, MAX_MESSAGE_BYTES).context("unpack")?;
            let unpacked = inner.encoded_len();
            (inner.message, unpacked, true)
        }
        other => (other, wire, false),
    };
    let (version, whole) = match inner {
        Some(Message::Snapshot(snapshot)) => (snapshot.version, true),
        Some(Message::Delta(delta)) => {
            ensure!(
                delta.base_version == held,
                "a delta to version {} from version {}, but the stream holds version {held}",
                delta.version,
                delta.base_version
            );
            (delta.version, false)
        }
        Some(Message::Heartbeat(_)) | None if !packed => return Ok(None),
        Some(Message::Heartbeat(_) | Message::Packed(_)) | None => {
            bail!("a packed message that holds no Snapshot or Delta")
        }
        // Sent only to data planes that ask for them, and this one does not.
        Some(Message::Services(_)) => bail!("a Services message, which was not asked for"),
    };
    Ok(Some(Received {
        version,
        wire,
        unpacked,
        whole,
    }))
}

fn message(message: data_plane_message::Message) -> DataPlaneMessage {
    DataPlaneMessage {
        message: Some(message),
    }
}
