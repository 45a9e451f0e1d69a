use std::net::Ipv4Addr;

use super::{nameserver::Nameserver, *};

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn entry() -> Entry {
    Entry {
        port: 80,
        status: Mutex::default(),
    }
}

#[test]
fn an_answer_changes_only_when_its_addresses_do() {
    let entry = entry();
    let now = SystemTime::now();
    let (a, b) = (at([10, 0, 0, 1], 80), at([10, 0, 0, 2], 80));
    let first = entry.record(Ok(vec![b, a, b]), now);
    assert!(first.changed, "the first answer is a change");
    let answer = entry.answer().unwrap();
    assert_eq!(answer.addresses(), [a, b], "sorted, each once");

    let again = entry.record(Ok(vec![a, b]), now);
    assert!(!again.changed);
    let same = entry.answer().unwrap();
    assert!(
        Arc::ptr_eq(&answer.0, &same.0),
        "an unchanged answer is kept as it was"
    );

    assert!(entry.record(Ok(vec![b]), now).changed);
    assert_eq!(entry.answer().unwrap().addresses(), [b]);
}

#[test]
fn a_failure_keeps_the_last_good_answer_and_an_outage_begins_once() {
    let entry = entry();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
    let a = at([10, 0, 0, 1], 80);
    // Failing before any answer: an outage too, and nothing to keep.
    assert!(entry.record(Err("timed out".into()), t0).outage_began);
    assert!(entry.answer().is_none());
    assert!(entry.record(Ok(vec![a]), t0).recovered);

    let t1 = t0 + Duration::from_secs(1);
    let failed = entry.record(Err("SERVFAIL".into()), t1);
    assert_eq!(
        failed,
        Recorded {
            outage_began: true,
            ..Recorded::default()
        }
    );
    let again = entry.record(Err("no answer".into()), t1 + Duration::from_secs(1));
    assert!(!again.outage_began, "logged once per outage");
    // An answer with no address is a failure, not an empty endpoint list.
    assert!(!entry.record(Ok(Vec::new()), t1).changed);
    assert_eq!(
        entry.answer().unwrap().addresses(),
        [a],
        "the last good answer is kept"
    );
    let status = lock(&entry.status);
    assert_eq!(status.failing_since, Some(t1));
    assert_eq!(status.resolved_at, Some(t0));
    assert_eq!(status.error.as_deref(), Some("the answer has no address"));
    drop(status);

    let back = entry.record(Ok(vec![a]), t1 + Duration::from_secs(5));
    assert!(back.recovered && !back.changed);
    assert!(lock(&entry.status).failing_since.is_none());
}

#[test]
fn the_refresh_follows_a_shorter_ttl_down_to_a_second() {
    let refresh = Duration::from_secs(30);
    assert_eq!(next_refresh(refresh, None), refresh);
    assert_eq!(
        next_refresh(refresh, Some(Duration::from_secs(300))),
        refresh
    );
    let ttl = Duration::from_secs(5);
    assert_eq!(next_refresh(refresh, Some(ttl)), ttl);
    assert_eq!(next_refresh(refresh, Some(Duration::ZERO)), MIN_REFRESH);
    // A refresh under a second is its own floor.
    let short = Duration::from_millis(200);
    assert_eq!(next_refresh(short, Some(Duration::ZERO)), short);
}

#[tokio::test]
async fn a_watched_name_follows_its_answers_and_stops_when_unused() {
    let server = Nameserver::start(&[Ipv4Addr::new(10, 0, 0, 1)]).await;
    let dns = Dns::new(&DnsSettings {
        refresh: Some(Duration::from_millis(200)),
        server: Some(server.addr),
    });
    let mut changes = dns.changes().unwrap();
    assert!(
        dns.name("127.0.0.1:80").is_none(),
        "an IP literal is never resolved"
    );
    assert!(dns.name("[::1]:80").is_none());
    assert!(
        dns.name("localhost:80").is_none(),
        "localhost stays with the system"
    );
    let name = dns.name("api.test:8080").unwrap();
    assert!(
        Arc::ptr_eq(&name, &dns.name("api.test:8080").unwrap()),
        "one task per name"
    );
    assert!(name.is_refreshing());

    let within = Duration::from_secs(10);
    let answered = |ip: [u8; 4]| {
        let name = name.clone();
        move || {
            name.answer()
                .is_some_and(|a| a.addresses() == [at(ip, 8080)])
        }
    };
    let first = answered([10, 0, 0, 1]);
    tokio::time::timeout(within, changes.wait_for(|_| first()))
        .await
        .unwrap()
        .unwrap();

    server.answer(&[Ipv4Addr::new(10, 0, 0, 2)]);
    let second = answered([10, 0, 0, 2]);
    tokio::time::timeout(within, changes.wait_for(|_| second()))
        .await
        .unwrap()
        .unwrap();

    // Silence: lookups fail, are counted, and the answer stays.
    server.silence(true);
    let (_, failures) = dns.resolutions();
    tokio::time::timeout(within, async {
        while dns.resolutions().1 == failures {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(second());
    let report = &dns.report()["api.test:8080"];
    assert_eq!(report.addresses, [at([10, 0, 0, 2], 8080)]);
    assert!(
        report.failing_since.is_some() && report.error.is_some(),
        "{report:?}"
    );

    let task = name.task.clone().unwrap();
    drop((first, second, name));
    tokio::time::timeout(within, async {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the task ends with the last holder");
    assert_eq!(dns.watched(), 0);
    assert!(dns.report().is_empty());
}

#[test]
fn off_watches_nothing() {
    let dns = Dns::new(&DnsSettings::default());
    assert!(!dns.is_on());
    assert!(dns.name("api.test:80").is_none());
    assert!(dns.changes().is_none());
    let off = Dns::new(&DnsSettings {
        refresh: Some(Duration::ZERO),
        server: None,
    });
    assert!(!off.is_on());
}
