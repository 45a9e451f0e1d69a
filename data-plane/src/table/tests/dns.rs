//! Endpoints named by DNS: with an answer, one endpoint per address (the listed weight each,
//! in the answer's sorted order, so every data plane builds the same consistent-hash table);
//! without one, the name itself. Over TLS the addresses' connections name the host, and two
//! hostnames on one address do not share a pool.

use std::{net::Ipv4Addr, time::Duration};

use super::*;
use crate::{
    config::DnsSettings,
    side::dns::{Dns, nameserver::Nameserver},
};

const YAML: &str = "
kind: Upstream
name: plain
spec:
  endpoints: [{ address: api.test:8080, weight: 3 }, { address: 127.0.0.1:9 }]
  loadBalancer: { type: ConsistentHash, hashOn: { header: x-user } }
---
kind: Upstream
name: one
spec: { endpoints: [{ address: api.test:8443 }], tls: {} }
---
kind: Upstream
name: two
spec: { endpoints: [{ address: other.test:8443 }], tls: {} }
";

fn side_of(server: &Nameserver) -> SideTables {
    SideTables::with_dns(Dns::new(&DnsSettings {
        refresh: Some(Duration::from_millis(200)),
        server: Some(server.addr),
    }))
}

fn compile(side: &SideTables) -> Table {
    let resources = parse_documents(YAML).unwrap();
    Table::compile(1, &resources, Source::File, side).unwrap()
}

fn addresses(table: &Table, upstream: &str) -> Vec<String> {
    let upstream = table.upstream(upstream).unwrap();
    upstream
        .endpoints()
        .iter()
        .map(|e| e.address().to_owned())
        .collect()
}

async fn answered(side: &SideTables, names: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let report = side.dns().report();
            if report.len() == names && report.values().all(|r| !r.addresses.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every name answered");
}

#[tokio::test]
async fn names_become_their_addresses_once_answered() {
    let server = Nameserver::start(&[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1)]).await;
    let side = side_of(&server);
    let before = compile(&side);
    assert_eq!(
        addresses(&before, "plain"),
        ["api.test:8080", "127.0.0.1:9"],
        "no answer yet"
    );
    answered(&side, 3).await;
    assert!(!before.upstream("plain").unwrap().dns_is_current());

    let table = compile(&side);
    let plain = table.upstream("plain").unwrap();
    assert!(plain.dns_is_current());
    assert_eq!(
        addresses(&table, "plain"),
        ["10.0.0.1:8080", "10.0.0.2:8080", "127.0.0.1:9"]
    );
    // Weights 3, 3, 1: a round-robin cycle of 7 picks.
    let mut picks = [0; 3];
    for _ in 0..7 {
        picks[plain.pick().unwrap()] += 1;
    }
    assert_eq!(picks, [3, 3, 1]);
    // Plain HTTP/1.1: connections to an address are the same whatever name found it.
    assert_eq!(plain.endpoints()[0].pool_key(), "10.0.0.1:8080");
    assert_eq!(plain.endpoints()[0].pool().connector().host(), None);

    // TLS: the same address under two names is two pools, each naming its host.
    let (one, two) = (
        table.upstream("one").unwrap(),
        table.upstream("two").unwrap(),
    );
    let (a, b) = (&one.endpoints()[0], &two.endpoints()[0]);
    assert_eq!(
        (a.address(), b.address()),
        ("10.0.0.1:8443", "10.0.0.1:8443")
    );
    assert_ne!(a.pool_key(), b.pool_key());
    assert_eq!(a.pool().connector().host(), Some("api.test"));
    assert_eq!(b.pool().connector().host(), Some("other.test"));

    // Another data plane with the same answer hashes every key to the same address.
    let elsewhere = side_of(&server);
    let first = compile(&elsewhere);
    answered(&elsewhere, 3).await;
    let other = compile(&elsewhere);
    drop(first);
    let there = other.upstream("plain").unwrap();
    for key in 0..200u64 {
        let here = plain.choose(Some(key)).unwrap().0;
        let that = there.choose(Some(key)).unwrap().0;
        assert_eq!(
            plain.endpoints()[here].address(),
            there.endpoints()[that].address()
        );
    }

    // Unused, the names stop being resolved.
    assert_eq!(side.dns().watched(), 3);
    drop((before, table));
    assert_eq!(side.dns().watched(), 0);
}
