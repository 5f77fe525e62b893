//! `paxos serve`: wire one node together. Load its key and check it against
//! the inventory, recover its replica from disk, start the SSH server and a
//! link to every peer of its membership (kept in step as the membership
//! changes), then run the consensus task until shutdown.

use super::clock::PeerClocks;
use super::handle::NodeHandle;
use super::metrics::Metrics;
use super::peers::{Reconciler, SpawnLink};
use super::runtime::Runtime;
use super::transport::{PeerLinks, PeerTransport};
use crate::cluster::{Cluster, parse_public_key};
use crate::consensus::Replica;
use crate::consensus::messages::Message;
use crate::keys;
use crate::ops::audit::AuditLog;
use crate::ops::command::{OpsCommand, parse};
use crate::ops::{Context, run_console, run_line};
use crate::ops::{EXIT_DENIED, Role};
use crate::ssh::clock_probe::{ClockExchange, PROBE_INTERVAL};
use crate::ssh::frame::DEFAULT_MAX_FRAME;
use crate::ssh::peer::{PeerLink, PeerLinkSettings};
use crate::ssh::server::{
    AccessList, JOIN_COMMAND, OperatorService, OperatorSession, PeerEvent, Principal, ServerSettings, SshServer,
};
use crate::ssh::wall_clock::WallClock;
use crate::storage::{DiskStorage, Opened, Owner, Storage};
use anyhow::{Context as _, bail};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::BufReader;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::{error, info, warn};

/// Messages queued for one unreachable peer before the oldest are dropped
/// (Paxos retransmits what matters).
const PEER_QUEUE: usize = 4096;
/// Bytes queued per peer at most: two frames' worth, so a slow or absent
/// peer costs bounded memory however large the messages are.
const PEER_QUEUE_BYTES: usize = 2 * DEFAULT_MAX_FRAME;

/// How long an operator command waits for a leader or a decision.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A started node.
pub struct Running {
    pub handle: NodeHandle,
    pub ssh_addr: SocketAddr,
    pub task: JoinHandle<anyhow::Result<()>>,
}

pub async fn start(cluster: Cluster, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let me = cluster.me().clone();
    let id = me.id;
    let key_file = &cluster.node.key_file;
    let identity = keys::load_private(key_file).with_context(|| format!("node {id}: loading its key"))?;
    let pinned = cluster.inventory.host_key(id)?;
    if identity.public_key().key_data() != pinned.key_data() {
        bail!(
            "node {id}: the key in {} is {} but the inventory {} pins {} for this node; \
             fix the inventory's host_key or use the right key file",
            key_file.display(),
            keys::fingerprint(identity.public_key()),
            cluster.inventory.path.display(),
            keys::fingerprint(&pinned)
        );
    }
    let identity = Arc::new(identity);

    let owner = Owner { cluster: cluster.inventory.cluster.clone(), node: id };
    let (mut storage, opened) = DiskStorage::open_as(&cluster.node.data_dir, &owner)?;
    match opened {
        Opened::Existing => {}
        Opened::Created => info!(
            node = id,
            dir = %cluster.node.data_dir.display(),
            incarnation = storage.incarnation(),
            "new data directory: this node votes once its peers confirm it never had another one, \
             or once it has rejoined (it catches up first)"
        ),
        Opened::Adopted => info!(
            node = id,
            dir = %cluster.node.data_dir.display(),
            incarnation = storage.incarnation(),
            "gave a data directory from an earlier version its identity; its history is kept"
        ),
    }
    let recovered = storage.recover()?;
    info!(
        node = id,
        dir = %cluster.node.data_dir.display(),
        records = recovered.records.len(),
        snapshot = recovered.snapshot.as_ref().map(|s| s.through),
        incarnation = recovered.incarnation,
        "recovered durable state"
    );
    let replica = Replica::new(cluster.consensus.clone(), rand::random(), recovered)?;
    let status = replica.status();
    info!(node = id, commit = status.commit_index, promised = %status.promised, "replica ready");

    // Peer keys come from the membership (`peers::Reconciler`), set before
    // the server takes its first connection.
    let mut access = AccessList::default();
    let parse_all = |keys: &[String]| -> anyhow::Result<Vec<_>> {
        keys.iter().map(|k| parse_public_key(k).map_err(anyhow::Error::msg)).collect()
    };
    access.operators = parse_all(cluster.inventory.operator_keys())?;
    access.readers = parse_all(cluster.inventory.reader_keys())?;

    let listen = cluster.listen();
    let settings = ServerSettings {
        node: id,
        listen: listen.to_string(),
        host_key: (*identity).clone(),
        access,
        max_frame: DEFAULT_MAX_FRAME,
    };
    // Clock probes read this clock; a skew is a test and drill hook.
    let clock = WallClock::from_env().map_err(anyhow::Error::msg)?;
    if clock.skew_ms() != 0 {
        warn!(
            node = id,
            skew_ms = clock.skew_ms(),
            "clock probes read a skewed clock ({})",
            crate::ssh::wall_clock::CLOCK_SKEW_ENV
        );
    }
    let metrics = Arc::new(Metrics::new());
    let clocks = Arc::new(PeerClocks::new(id, cluster.node.clock_skew_warn_ms, metrics.clone()));
    let exchange = ClockExchange { clock, sink: clocks.clone(), interval: PROBE_INTERVAL };
    let server = SshServer::bind(settings).await?.with_clock(exchange);
    let ssh_addr = server.local_addr();
    let metrics_listener = match cluster.node.metrics_listen {
        Some(addr) => Some(super::metrics_http::bind(addr).await?),
        None => None,
    };

    let tick = cluster.tick();
    let inventory = Arc::new(cluster.inventory.clone());
    let links = PeerLinks::default();
    let spawn_link: SpawnLink = Box::new(move |peer, spec, stop| {
        let settings = PeerLinkSettings {
            local_node: id,
            peer_node: peer,
            peer_addr: spec.address.clone(),
            peer_host_key: spec.key.clone(),
            identity: identity.clone(),
            max_frame: DEFAULT_MAX_FRAME,
            queue_capacity: PEER_QUEUE,
            queue_bytes: PEER_QUEUE_BYTES,
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_secs(2),
            clock,
        };
        PeerLink::<Message>::spawn(settings, stop)
    });
    let mut reconciler =
        Reconciler::new(id, inventory.clone(), links.clone(), server.peer_keys(), spawn_link, shutdown.clone());
    reconciler.apply(replica.membership());
    let (membership_tx, membership_rx) = watch::channel(replica.membership().clone());
    tokio::spawn(reconciler.follow(membership_rx).instrument(tracing::info_span!("node", id)));

    let (inbox_tx, inbox_rx) = mpsc::channel(8192);
    let (requests_tx, requests_rx) = mpsc::channel(4096);
    let handle = NodeHandle {
        requests: requests_tx,
        inventory,
        id,
        peers: links.clone(),
        metrics: metrics.clone(),
        clocks,
        started: Instant::now(),
        tick,
        request_timeout: REQUEST_TIMEOUT,
    };
    let audit = AuditLog::open(&cluster.node.audit_log)
        .with_context(|| format!("opening the audit log {}", cluster.node.audit_log.display()))?;
    let service = Arc::new(OpsService { api: Arc::new(handle.clone()), audit: Arc::new(audit) });
    let transport = PeerTransport::new(links.clone(), metrics.clone());
    let runtime = Runtime { replica, storage, transport, tick, metrics, membership: membership_tx };
    if let Some(listener) = metrics_listener {
        info!(node = id, addr = %listener.local_addr()?, "serving GET /metrics");
        tokio::spawn(super::metrics_http::serve(listener, handle.clone(), shutdown.clone()));
    }

    if let Some(path) = std::env::var_os(crate::ssh::faults::FAULT_FILE_ENV) {
        // A testing facility (the nemesis's partitions); unset in production.
        crate::ssh::faults::watch(id, path.into(), shutdown.clone());
    }
    let server_stop = shutdown.clone();
    let span = tracing::info_span!("node", id);
    // Peer channels that open wake a link backing off towards that peer;
    // those that close go to the consensus task (`Input::LinkLost`).
    let (events_tx, mut events) = mpsc::channel(64);
    let (lost_tx, lost_rx) = mpsc::channel(64);
    let server = server.with_peer_events(events_tx);
    let redial = links.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                PeerEvent::Greeted(peer) => {
                    if let Some(link) = redial.get(peer) {
                        link.redial_now();
                    }
                }
                PeerEvent::Lost(peer) => {
                    let _ = lost_tx.try_send(peer);
                }
            }
        }
    });
    let server_task = tokio::spawn(server.run::<Message>(inbox_tx, service, server_stop).instrument(span.clone()));
    let runtime_stop = shutdown.clone();
    let task = tokio::spawn(
        async move {
            let result = runtime.run(inbox_rx, requests_rx, lost_rx, runtime_stop).await;
            // Whatever ended the consensus task ends the node.
            shutdown.cancel();
            if let Ok(Err(e)) = server_task.await {
                error!(node = id, "ssh server: {e}");
            }
            result.map_err(anyhow::Error::from)
        }
        .instrument(span),
    );
    info!(node = id, name = %me.name, addr = %ssh_addr, "node serving");
    Ok(Running { handle, ssh_addr, task })
}

/// Operator commands over SSH, authorized by the key's role.
struct OpsService {
    api: Arc<NodeHandle>,
    audit: Arc<AuditLog>,
}

impl OperatorService for OpsService {
    fn run(&self, session: OperatorSession) -> Pin<Box<dyn Future<Output = u32> + Send + 'static>> {
        let api = self.api.clone();
        let audit = self.audit.clone();
        Box::pin(async move {
            let OperatorSession { principal, fingerprint, command_line, stdin, mut stdout, mut stderr } = session;
            let role = match principal {
                Principal::Operator => Role::Operator,
                Principal::Reader => Role::Reader,
                // A member's key fetches the live inventory (`paxos-join`), and nothing else.
                Principal::Peer(_) if command_line == JOIN_COMMAND => Role::Reader,
                Principal::Peer(_) => return EXIT_DENIED as u32,
            };
            let ctx = Context { api: &*api, role, fingerprint: &fingerprint, audit: Some(&audit) };
            let words: Vec<&str> = command_line.split_whitespace().filter(|w| *w != "paxos").collect();
            let console = words.iter().all(|w| *w == "--json")
                || parse(&command_line).is_ok_and(|i| matches!(i.command, OpsCommand::Console));
            if console {
                let json = words.contains(&"--json");
                return match run_console(&ctx, json, BufReader::new(stdin), &mut stdout).await {
                    Ok(()) => 0,
                    Err(_) => 1,
                };
            }
            run_line(&ctx, &command_line, &mut stdout, &mut stderr).await as u32
        })
    }
}
