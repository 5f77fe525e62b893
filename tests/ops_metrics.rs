//! Metrics of real `paxos serve` daemons, read the two ways an operator
//! does: `ssh NODE -s paxos metrics` and Prometheus' `GET /metrics` on the
//! node's `metrics_listen` address, over a plain TCP connection. The text is
//! parsed with an OpenMetrics parser, never matched as strings.

mod support_cluster;

use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support_cluster::*;

type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

fn parse(text: &str) -> Exposition {
    parse_openmetrics(text).unwrap_or_else(|e| panic!("not OpenMetrics text ({e:?}):\n{text}"))
}

/// One HTTP exchange: the raw request bytes out, (status line, headers, body) back.
fn http(addr: SocketAddr, request: &[u8]) -> (String, BTreeMap<String, String>, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(request).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap_or_else(|e| panic!("reading the answer from {addr}: {e}"));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("bad header {l:?}"));
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    (status, headers, body.to_owned())
}

fn scrape(addr: SocketAddr) -> Exposition {
    let (status, headers, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: node\r\nAccept: */*\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(headers["content-type"].starts_with("application/openmetrics-text; version=1.0.0"), "{headers:?}");
    assert_eq!(headers["content-length"], body.len().to_string());
    parse(&body)
}

fn number(v: &OpenMetricsValue) -> f64 {
    match v {
        OpenMetricsValue::Counter(c) => c.value.as_f64(),
        OpenMetricsValue::Gauge(g) => g.as_f64(),
        other => panic!("not a number: {other:?}"),
    }
}

/// The value of an unlabelled counter or gauge.
fn value(e: &Exposition, family: &str) -> f64 {
    number(&e.families.get(family).unwrap_or_else(|| panic!("no {family}")).iter_samples().next().unwrap().value)
}

fn histogram(e: &Exposition, family: &str) -> openmetrics_parser::HistogramValue {
    match &e.families[family].iter_samples().next().unwrap().value {
        OpenMetricsValue::Histogram(h) => h.clone(),
        other => panic!("{family} is {other:?}"),
    }
}

/// `paxos_peer_connected` by peer id.
fn peers_connected(e: &Exposition) -> BTreeMap<String, f64> {
    by_peer(e, "paxos_peer_connected")
}

/// A per-peer gauge or counter by peer id; empty if the family has no samples.
fn by_peer(e: &Exposition, family: &str) -> BTreeMap<String, f64> {
    let Some(f) = e.families.get(family) else { return BTreeMap::new() };
    f.iter_samples()
        .map(|s| (s.get_labelset().unwrap().get_label_value("peer").unwrap().to_owned(), number(&s.value)))
        .collect()
}

const NAMES: &[(&str, OpenMetricsType)] = &[
    ("paxos_has_leader", OpenMetricsType::Gauge),
    ("paxos_is_leader", OpenMetricsType::Gauge),
    ("paxos_leader_changes_seen", OpenMetricsType::Counter),
    ("paxos_proposals_committed", OpenMetricsType::Counter),
    ("paxos_proposals_failed", OpenMetricsType::Counter),
    ("paxos_proposals_pending", OpenMetricsType::Gauge),
    ("paxos_commit_index", OpenMetricsType::Gauge),
    ("paxos_applied_index", OpenMetricsType::Gauge),
    ("paxos_wal_fsync_duration_seconds", OpenMetricsType::Histogram),
    ("paxos_commit_duration_seconds", OpenMetricsType::Histogram),
    ("paxos_elections_started", OpenMetricsType::Counter),
    ("paxos_snapshot_index", OpenMetricsType::Gauge),
    ("paxos_peer_connected", OpenMetricsType::Gauge),
    ("paxos_peer_messages_dropped", OpenMetricsType::Counter),
    ("paxos_build_info", OpenMetricsType::Gauge),
];

#[test]
fn metrics_over_ssh_and_http_name_what_operators_expect_and_move_with_writes() {
    let mut cluster = Cluster::prepare(3);
    let mut http_addr = BTreeMap::new();
    for node in &cluster.nodes {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&node.config).unwrap()).unwrap();
        config["metrics_listen"] = addr.to_string().into();
        std::fs::write(&node.config, config.to_string()).unwrap();
        http_addr.insert(node.id, addr);
    }
    cluster.start_all();
    let (leader, _) = cluster.wait_for_leader();
    let follower = cluster.nodes.iter().map(|n| n.id).find(|id| *id != leader).unwrap();

    // Every name, with its type, from the HTTP listener and from ssh.
    let over_ssh = cluster.paxos_on(follower, &["metrics"]);
    assert_eq!(over_ssh.code, Some(0), "{}", over_ssh.show());
    for exposition in [scrape(http_addr[&leader]), parse(&over_ssh.stdout)] {
        for (name, kind) in NAMES {
            let family = exposition.families.get(*name).unwrap_or_else(|| panic!("no {name}"));
            assert_eq!(&family.family_type, kind, "{name}");
        }
        let build = exposition.families["paxos_build_info"].iter_samples().next().unwrap();
        assert_eq!(build.get_labelset().unwrap().get_label_value("version"), Some(env!("CARGO_PKG_VERSION")));
    }
    let e = eventually(
        "the leader to report a leader and both peers connected",
        || {
            let e = scrape(http_addr[&leader]);
            let all_up = peers_connected(&e).values().filter(|v| **v == 1.0).count() == 2;
            Some(e).filter(|e| all_up && value(e, "paxos_has_leader") == 1.0)
        },
        || cluster.logs(),
    );
    assert_eq!(value(&e, "paxos_is_leader"), 1.0);
    assert!(value(&e, "paxos_leader_changes_seen") >= 1.0);

    // Clock probes: each peer's offset (one machine, one clock: within the
    // error of a loopback round trip, far under a millisecond) and its
    // round trips, per peer.
    let e = eventually(
        "the leader to estimate both peers' clocks",
        || Some(scrape(http_addr[&leader])).filter(|e| by_peer(e, "paxos_clock_offset_seconds").len() == 2),
        || cluster.logs(),
    );
    for (peer, offset) in by_peer(&e, "paxos_clock_offset_seconds") {
        assert!(offset.abs() < 0.001, "peer {peer}: offset {offset} s on one machine");
    }
    let round_trips: BTreeMap<String, u64> = e.families["paxos_peer_round_trip_seconds"]
        .iter_samples()
        .map(|s| {
            let OpenMetricsValue::Histogram(h) = &s.value else { panic!("{:?}", s.value) };
            (s.get_labelset().unwrap().get_label_value("peer").unwrap().to_owned(), h.count.unwrap_or(0))
        })
        .collect();
    assert_eq!(round_trips.len(), 2, "{round_trips:?}");
    assert!(round_trips.values().all(|n| *n >= 1), "{round_trips:?}");
    assert!(value(&e, "paxos_elections_started") >= 1.0);
    let f = scrape(http_addr[&follower]);
    assert_eq!(value(&f, "paxos_is_leader"), 0.0);

    // Writes move the counters: proposals are counted on the node that took them.
    let total = |name: &str| -> f64 { http_addr.values().map(|a| value(&scrape(*a), name)).sum() };
    let committed_before = total("paxos_proposals_committed");
    let fsyncs_before = histogram(&scrape(http_addr[&leader]), "paxos_wal_fsync_duration_seconds").count.unwrap();
    let commits_before = histogram(&scrape(http_addr[&leader]), "paxos_commit_duration_seconds").count.unwrap_or(0);
    let mut last = 0;
    for i in 0..3 {
        last = cluster.put(&format!("k{i}"), "v");
    }
    assert_eq!(total("paxos_proposals_committed"), committed_before + 3.0);
    let commits_after: u64 =
        http_addr.values().map(|a| histogram(&scrape(*a), "paxos_commit_duration_seconds").count.unwrap_or(0)).sum();
    assert!(commits_after >= commits_before + 3, "{commits_before} -> {commits_after}");
    let e = scrape(http_addr[&leader]);
    assert!(value(&e, "paxos_commit_index") > last as f64 - 1.0, "commit index behind slot {last}");
    let fsync = histogram(&e, "paxos_wal_fsync_duration_seconds");
    assert!(fsync.count.unwrap() > fsyncs_before, "{fsyncs_before} -> {:?}", fsync.count);
    assert!(fsync.buckets.iter().any(|b| b.upper_bound <= 0.0001), "{fsync:?}");
    let f = eventually(
        "the follower to apply the writes",
        || Some(scrape(http_addr[&follower])).filter(|f| value(f, "paxos_applied_index") >= last as f64),
        || cluster.logs(),
    );
    assert!(value(&f, "paxos_commit_index") >= last as f64);

    // Anything else than GET /metrics is refused with the right status.
    let addr = http_addr[&follower];
    let (status, _, _) = http(addr, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = http(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(headers["allow"], "GET, HEAD");
    let (status, headers, body) = http(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.is_empty() && headers["content-length"] != "0", "{headers:?}");
    let (status, _, body) = http(addr, b"garbage\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{body}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let (status, _, body) = http(addr, &huge);
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 400 Bad Request", "request head too large\n"));
    // A client that never finishes its request is answered and closed.
    let (status, _, _) = http(addr, b"GET /metrics HTTP/1.1\r\n");
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    // The node still serves after all that.
    assert_eq!(value(&scrape(addr), "paxos_has_leader"), 1.0);

    // A metrics address already taken is a clear startup error.
    cluster.kill(follower);
    let taken = std::net::TcpListener::bind(http_addr[&follower]).expect("rebind the freed port");
    cluster.spawn(follower);
    let log_file = cluster.node(follower).log.clone();
    let status = eventually(
        "the node to refuse to start",
        || cluster.exited(follower),
        || std::fs::read_to_string(&log_file).unwrap_or_default(),
    );
    assert!(!status.success());
    let log = cluster.log(follower);
    assert!(log.contains(&format!("metrics_listen {}: cannot listen for HTTP", http_addr[&follower])), "{log}");
    drop(taken);
}

#[test]
fn prometheus_config_lists_every_node_and_refuses_bad_input() {
    let cluster = Cluster::prepare(3);
    let inventory = cluster.inventory.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(PAXOS);
        cmd.args(["--cluster", inventory, "prometheus-config"]).args(args);
        run(cmd)
    };
    let out = cli(&["--metrics-port", "9464", "--job", "lab"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    let targets: Vec<&str> = out.stdout.lines().filter_map(|l| l.trim().strip_prefix("- targets: ")).collect();
    assert_eq!(targets, ["[\"127.0.0.1:9464\"]"; 3], "{}", out.show());
    assert!(out.stdout.contains("  - job_name: \"lab\"\n"), "{}", out.show());

    let out = cli(&[]);
    assert_eq!(out.code, Some(2), "{}", out.show());
    assert!(out.stderr.contains("--metrics-port <PORT>"), "{}", out.show());
    let out = cli(&["--metrics-port", "0"]);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(out.stderr.contains("--metrics-port 0 is no port"), "{}", out.show());
    let out = cli(&["--metrics-port", "9464", "--scrape-interval", "15"]);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(out.stderr.contains("is not a Prometheus duration"), "{}", out.show());
    let mut cmd = std::process::Command::new(PAXOS);
    cmd.args(["--cluster", "/nonexistent/cluster.json", "prometheus-config", "--metrics-port", "9464"]);
    let out = run(cmd);
    assert_eq!(out.code, Some(1), "{}", out.show());
    assert!(out.stderr.contains("/nonexistent/cluster.json"), "{}", out.show());
}

/// Metric names in a PromQL expression: every `paxos_…` word.
fn names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("paxos_") {
        let word: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + word.len()..];
        names.push(word);
    }
    names
}

#[test]
fn the_grafana_dashboard_is_importable_and_asks_only_for_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ops/grafana/paxos.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = vars.iter().find(|v| v["type"] == "datasource").expect("a datasource variable");
    assert_eq!(datasource["query"], "prometheus");
    let ds_ref = format!("${{{}}}", datasource["name"].as_str().unwrap());

    // Every family a node exports, sample names included (_total, _bucket, ...).
    let metrics = paxos::node::metrics::Metrics::new();
    metrics.proposal_committed(Duration::from_millis(1));
    metrics.peers([(2, paxos::node::metrics::PeerSample { clock_offset: Some(0.0), ..Default::default() })]);
    metrics.round_trip(2, Duration::from_micros(100));
    let exported = parse(&metrics.render());
    let known = |name: &str| {
        ["", "_total", "_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| name.strip_suffix(suffix).is_some_and(|family| exported.families.contains_key(family)))
    };

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut used = std::collections::BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "duplicate panel id in {panel}");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{panel}");
        }
        assert_eq!(panel["datasource"]["uid"], ds_ref.as_str(), "{}", panel["title"]);
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            for name in names_in(expr) {
                assert!(known(&name), "panel {}: {name} is not exported by a node", panel["title"]);
                used.insert(name);
            }
        }
    }
    let titles: Vec<&str> = panels.iter().map(|p| p["title"].as_str().unwrap()).collect();
    for wanted in [
        "Leader",
        "Commit rate",
        "Commit latency",
        "WAL fsync latency",
        "Lag",
        "elections",
        "Peers",
        "Clock offset",
        "round trip",
    ] {
        assert!(titles.iter().any(|t| t.contains(wanted)), "no panel for {wanted}: {titles:?}");
    }
    for name in [
        "paxos_commit_duration_seconds_bucket",
        "paxos_wal_fsync_duration_seconds_bucket",
        "paxos_peer_connected",
        "paxos_clock_offset_seconds",
        "paxos_peer_round_trip_seconds_bucket",
    ] {
        assert!(used.contains(name), "{name} not on the dashboard");
    }
}
