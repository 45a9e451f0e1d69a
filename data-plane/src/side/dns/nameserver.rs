//! A nameserver for tests, on 127.0.0.1 over UDP: every name under `.test` has the A records
//! it is given (TTL 1 s) and no other record; other names do not exist; while silent, it
//! answers nothing.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::net::UdpSocket;

#[derive(Debug)]
pub(crate) struct Nameserver {
    pub(crate) addr: SocketAddr,
    ips: Arc<Mutex<Vec<Ipv4Addr>>>,
    silent: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Nameserver {
    pub(crate) async fn start(ips: &[Ipv4Addr]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let answers = Arc::new(Mutex::new(ips.to_vec()));
        let silent: Arc<AtomicBool> = Arc::default();
        let (a, s) = (answers.clone(), Arc::clone(&silent));
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if s.load(Ordering::Relaxed) {
                    continue;
                }
                let ips = a.lock().unwrap().clone();
                if let Some(reply) = reply(&buf[..n], &ips) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        Self {
            addr,
            ips: answers,
            silent,
            task,
        }
    }

    pub(crate) fn answer(&self, ips: &[Ipv4Addr]) {
        *self.ips.lock().unwrap() = ips.to_vec();
    }

    pub(crate) fn silence(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }
}

impl Drop for Nameserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(query: &[u8], ips: &[Ipv4Addr]) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut last = String::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        last = String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase();
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let known = last == "test";
    let answers: &[Ipv4Addr] = if known && qtype == 1 { ips } else { &[] };
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }, 0, 1]);
    out.extend_from_slice(&u16::try_from(answers.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in answers {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}
