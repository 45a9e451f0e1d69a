//! A nameserver for the tests, in this process: UDP and TCP on one free port of 127.0.0.1
//! (point a data plane at it with `--dns-server`). It answers the A and AAAA records the test
//! sets for each name, with a short TTL, NOERROR with no record for a type the name lacks, and
//! NXDOMAIN for a name it does not know; on demand it answers SERVFAIL or NXDOMAIN to every
//! query, or goes silent (queries are read and counted, never answered). Written from the wire
//! format of RFC 1035 (plain queries only: no compression in questions, EDNS ignored).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    task::JoinHandle,
};

/// How the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// With the records set.
    Answer,
    /// SERVFAIL to everything.
    ServFail,
    /// NXDOMAIN to everything.
    NxDomain,
    /// Nothing at all.
    Silent,
}

/// A running nameserver; stopped when dropped.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Zone {
    /// Lower-case names without the final dot.
    records: HashMap<String, Vec<IpAddr>>,
    ttl: u32,
    mode: Mode,
    /// Queries received, by name.
    queries: HashMap<String, u64>,
}

const SERVFAIL: u8 = 2;
const NXDOMAIN: u8 = 3;
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

// === impl DnsServer ===

impl DnsServer {
    /// Starts on a free port of 127.0.0.1, UDP and TCP, answering nothing but NXDOMAIN until
    /// names are set; records have a TTL of 1 s.
    pub async fn start() -> DnsServer {
        let zone = Arc::new(Mutex::new(Zone {
            records: HashMap::new(),
            ttl: 1,
            mode: Mode::Answer,
            queries: HashMap::new(),
        }));
        let (udp, tcp) = bind_pair()
            .await
            .unwrap_or_else(|e| panic!("the test nameserver could not bind: {e:#}"));
        let addr = udp.local_addr().expect("a bound address");
        let tasks = vec![
            tokio::spawn(serve_udp(udp, zone.clone())),
            tokio::spawn(serve_tcp(tcp, zone.clone())),
        ];
        DnsServer { addr, zone, tasks }
    }

    /// `127.0.0.1:<port>`, for `--dns-server`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `name` resolves to `ips` from now on (none: it does not exist).
    pub fn set(&self, name: &str, ips: &[IpAddr]) {
        let name = normalise(name);
        let mut zone = self.lock();
        if ips.is_empty() {
            zone.records.remove(&name);
        } else {
            zone.records.insert(name, ips.to_vec());
        }
    }

    /// The TTL of the records answered from now on.
    pub fn set_ttl(&self, seconds: u32) {
        self.lock().ttl = seconds;
    }

    /// How every query is answered from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    /// Queries received for `name` so far (whatever the mode, each type counted).
    pub fn queries(&self, name: &str) -> u64 {
        self.lock()
            .queries
            .get(&normalise(name))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.zone.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A UDP socket and a TCP listener on the same free port.
async fn bind_pair() -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.context("UDP")?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // Taken for TCP: another port.
            Err(error) => last = Some(error),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no port"), Into::into))
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&zone, &buf[..n]) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve_connection(stream, zone.clone()));
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2) until the client closes.
async fn serve_connection(mut stream: TcpStream, zone: Arc<Mutex<Zone>>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        if let Some(reply) = answer(&zone, &query) {
            let Ok(len) = u16::try_from(reply.len()) else {
                return;
            };
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            if stream.write_all(&framed).await.is_err() {
                return;
            }
        }
    }
}

/// The reply to one query, `None` for none (silent, or not a query this server reads).
fn answer(zone: &Mutex<Zone>, query: &[u8]) -> Option<Vec<u8>> {
    let question = Question::parse(query)?;
    let mut zone = zone.lock().unwrap_or_else(PoisonError::into_inner);
    *zone.queries.entry(question.name.clone()).or_default() += 1;
    let known = zone.records.get(&question.name);
    let (rcode, ips): (u8, Vec<IpAddr>) = match (zone.mode, known) {
        (Mode::Silent, _) => return None,
        (Mode::ServFail, _) => (SERVFAIL, Vec::new()),
        (Mode::NxDomain, _) | (Mode::Answer, None) => (NXDOMAIN, Vec::new()),
        (Mode::Answer, Some(ips)) => {
            let wanted = ips
                .iter()
                .copied()
                .filter(|ip| match ip {
                    IpAddr::V4(_) => question.qtype == TYPE_A,
                    IpAddr::V6(_) => question.qtype == TYPE_AAAA,
                })
                .collect();
            (0, wanted)
        }
    };
    let ttl = zone.ttl;
    drop(zone);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[..2]);
    // QR, the query's opcode and RD; AA, RA and the answer's code.
    out.push(0x80 | (query[2] & 0x79) | 0x04);
    out.push(0x80 | rcode);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::try_from(ips.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question.raw);
    for ip in ips {
        // The name as a pointer to the question's (offset 12).
        out.extend_from_slice(&[0xc0, 0x0c]);
        let (kind, data): (u16, Vec<u8>) = match ip {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&u16::try_from(data.len()).ok()?.to_be_bytes());
        out.extend_from_slice(&data);
    }
    Some(out)
}

/// The one question of a query.
struct Question<'a> {
    name: String,
    qtype: u16,
    /// The question's bytes, to echo.
    raw: &'a [u8],
}

impl<'a> Question<'a> {
    fn parse(query: &'a [u8]) -> Option<Self> {
        let header = query.get(..12)?;
        let is_response = header[2] & 0x80 != 0;
        let questions = u16::from_be_bytes([header[4], header[5]]);
        if is_response || questions != 1 {
            return None;
        }
        let mut at = 12;
        let mut labels = Vec::new();
        loop {
            let len = usize::from(*query.get(at)?);
            at += 1;
            if len == 0 {
                break;
            }
            // A pointer or an extended label: not in the queries this server reads.
            if len > 63 {
                return None;
            }
            labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
            at += len;
        }
        let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
        Some(Self {
            name: labels.join("."),
            qtype,
            raw: query.get(12..at + 4)?,
        })
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
