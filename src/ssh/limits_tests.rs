use super::*;
use std::net::Ipv4Addr;

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        auth_timeout: Duration::from_secs(20),
        max_connections: 10,
        max_client_connections: 3,
        max_unauthenticated: 6,
        max_unauthenticated_per_source: 3,
        source_burst: 4,
        source_per_sec: 2,
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn reason(r: Result<Ticket, Refused>) -> Refusal {
    match r {
        Ok(_) => panic!("admitted"),
        Err(refused) => refused.reason,
    }
}

#[test]
fn per_source_unauthenticated_cap() {
    let door = Admission::new(ConnectionLimits { source_burst: 100, ..limits() });
    let now = Instant::now();
    let held: Vec<Ticket> = (0..3).map(|_| door.admit(ip(2), now).expect("admit")).collect();
    assert_eq!(reason(door.admit(ip(2), now)), Refusal::SourceUnauthenticated { max: 3 });
    // Another source is not affected.
    let other = door.admit(ip(3), now).expect("another source");
    drop(other);
    // One authenticates: its slot frees at once.
    let mut held = held;
    held[0].authenticated(now);
    let fourth = door.admit(ip(2), now).expect("a freed slot");
    assert_eq!(door.open(), (4, 3, 0));
    drop(fourth);
    drop(held);
    assert_eq!(door.open(), (0, 0, 0));
}

#[test]
fn node_wide_unauthenticated_and_total_caps() {
    let door = Admission::new(ConnectionLimits { source_burst: 100, ..limits() });
    let now = Instant::now();
    let mut held: Vec<Ticket> = (0..6).map(|i| door.admit(ip(10 + i / 3), now).expect("admit")).collect();
    assert_eq!(reason(door.admit(ip(20), now)), Refusal::Unauthenticated { max: 6 });
    for t in &mut held {
        t.authenticated(now);
    }
    held.extend((0..4).map(|i| door.admit(ip(30 + i), now).expect("admit")));
    assert_eq!(door.open(), (10, 4, 0));
    assert_eq!(reason(door.admit(ip(40), now)), Refusal::Connections { max: 10 });
}

#[test]
fn rate_limit_refills_and_refunds_authenticated() {
    let door = Admission::new(ConnectionLimits { max_unauthenticated_per_source: 100, ..limits() });
    let start = Instant::now();
    for _ in 0..4 {
        drop(door.admit(ip(2), start).expect("within the burst"));
    }
    assert_eq!(reason(door.admit(ip(2), start)), Refusal::SourceRate { burst: 4, per_sec: 2 });
    // Half a second regains one token at 2 per second.
    let later = start + Duration::from_millis(500);
    let mut ticket = door.admit(ip(2), later).expect("refilled");
    assert!(door.admit(ip(2), later).is_err());
    // Authenticating returns the token.
    ticket.authenticated(later);
    drop(door.admit(ip(2), later).expect("refunded"));
    // The bucket never holds more than the burst.
    let much_later = start + Duration::from_secs(3600);
    for _ in 0..4 {
        drop(door.admit(ip(2), much_later).expect("full again"));
    }
    assert!(door.admit(ip(2), much_later).is_err());
}

#[test]
fn refusals_are_logged_once_a_second_per_source() {
    let door = Admission::new(ConnectionLimits { source_burst: 1, ..limits() });
    let start = Instant::now();
    drop(door.admit(ip(2), start).expect("admit"));
    let first = door.admit(ip(2), start).err().expect("refused");
    assert!(first.log);
    for _ in 0..5 {
        assert!(!door.admit(ip(2), start).err().expect("refused").log);
    }
    // 1.5 s regains a token (the burst is 1); the next refusal is logged
    // with the count of those that were not.
    let later = start + Duration::from_millis(1500);
    drop(door.admit(ip(2), later).expect("refilled"));
    let again = door.admit(ip(2), later).err().expect("refused");
    assert!(again.log);
    assert_eq!(again.unlogged, 5);
}

#[test]
fn ipv6_sources_count_by_slash_64_and_mapped_v4_as_v4() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(Source::of(a), Source::of(b));
    assert_ne!(Source::of(a), Source::of(c));
    assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
    let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
    assert_eq!(Source::of(mapped), Source::of(ip(2)));
}

#[test]
fn idle_sources_are_swept() {
    let door = Admission::new(ConnectionLimits { max_connections: 100_000, ..limits() });
    let start = Instant::now();
    for i in 0..=SWEEP_ABOVE as u32 {
        drop(door.admit(IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + i)), start).expect("admit"));
    }
    // Two seconds later every bucket is full again: all of them are idle.
    let later = start + Duration::from_secs(2);
    let held = door.admit(ip(2), later).expect("admit");
    assert_eq!(door.lock().sources.len(), 1, "only the live source is kept");
    drop(held);
}

#[test]
fn client_slots_are_capped_and_given_back() {
    let door = Admission::new(ConnectionLimits { source_burst: 100, max_unauthenticated_per_source: 100, ..limits() });
    let now = Instant::now();
    let mut tickets: Vec<Ticket> = (0..4).map(|_| door.admit(ip(2), now).expect("admit")).collect();
    for t in &mut tickets[..3] {
        t.claim_client_slot().expect("a client slot");
        t.authenticated(now);
    }
    assert_eq!(tickets[3].claim_client_slot(), Err(3));
    // Claiming twice takes one slot.
    assert_eq!(tickets[0].claim_client_slot(), Ok(()));
    assert_eq!(door.open(), (4, 1, 3));
    tickets.remove(0);
    assert_eq!(tickets[2].claim_client_slot(), Ok(()));
    drop(tickets);
    assert_eq!(door.open(), (0, 0, 0));
}

#[test]
fn zero_figures_are_refused() {
    assert!(ConnectionLimits::DEFAULT.validate().is_ok());
    let bad = ConnectionLimits { max_unauthenticated_per_source: 0, ..ConnectionLimits::DEFAULT };
    let err = bad.validate().unwrap_err();
    assert!(err.contains("max_unauthenticated_per_source"), "{err}");
    assert!(ConnectionLimits { auth_timeout: Duration::ZERO, ..ConnectionLimits::DEFAULT }.validate().is_err());
    assert!(ConnectionLimits { source_per_sec: 0, ..ConnectionLimits::DEFAULT }.validate().is_err());
    let crowded = ConnectionLimits { max_client_connections: 1024 - 64, ..ConnectionLimits::DEFAULT };
    let err = crowded.validate().unwrap_err();
    assert!(err.contains("no slot for a peer"), "{err}");
}

#[test]
fn the_default_passes_the_dheat_check() {
    // ssh-audit opens connections for 1.5 s and warns above 20 per second.
    let d = ConnectionLimits::DEFAULT;
    let admitted_in_window = f64::from(d.source_burst) + 1.5 * f64::from(d.source_per_sec);
    assert!(admitted_in_window / 1.5 < 20.0, "{admitted_in_window}");
}
