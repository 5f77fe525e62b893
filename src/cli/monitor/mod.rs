//! `paxos monitor`: a live view of the cluster in the terminal, refreshed
//! over one long-lived SSH session per node; `--once` prints one frame as
//! plain text for scripts.

mod collector;
mod histogram;
mod model;
mod render;

use super::remote::Target;
use crate::ops::EXIT_USAGE;
use crate::ops::health::{DEFAULT_MAX_LAG, EXIT_UNHEALTHY};
use clap::Args;
use collector::Collector;
use model::{Monitor, MonitoredNode, Snapshot};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use render::Context;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Bounds of `--interval-ms`.
const MIN_INTERVAL_MS: u64 = 100;
const MAX_INTERVAL_MS: u64 = 60_000;
/// How often the key reader checks whether it should stop.
const KEY_POLL: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Print one frame as plain text and exit: 0 if every node answered, 5 otherwise.
    /// It samples twice, one interval apart, to measure rates.
    #[arg(long)]
    pub once: bool,
    /// Time between refreshes (also how long a refresh waits for a node).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub interval_ms: u64,
    /// A node more slots than this behind the leader is "falling behind".
    #[arg(long, value_name = "SLOTS", default_value_t = DEFAULT_MAX_LAG)]
    pub max_lag: u64,
}

pub async fn run(cluster: &Path, identity: &Path, args: MonitorArgs) -> anyhow::Result<u8> {
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&args.interval_ms) {
        eprintln!(
            "paxos: monitor: --interval-ms {} is out of range: give {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS}",
            args.interval_ms
        );
        return Ok(EXIT_USAGE as u8);
    }
    if !args.once && !std::io::stdout().is_terminal() {
        eprintln!("paxos: monitor: the live view needs a terminal; use --once for one frame as plain text");
        return Ok(EXIT_USAGE as u8);
    }
    let target = Arc::new(Target::load(cluster, identity)?);
    let interval = Duration::from_millis(args.interval_ms);
    let nodes = target
        .inventory
        .nodes
        .iter()
        .map(|n| MonitoredNode { id: n.id, name: n.name.clone(), roles: n.roles.clone() })
        .collect();
    let monitor = Monitor::new(nodes, args.max_lag);
    let collector = Collector::new(target.clone(), interval);
    let cluster_name = target.inventory.cluster.clone();
    let ctx = Context { cluster: &cluster_name, interval_ms: args.interval_ms };
    if args.once {
        once(collector, monitor, &ctx, interval).await
    } else {
        live(collector, monitor, &ctx, interval).await
    }
}

async fn once(
    mut collector: Collector,
    mut monitor: Monitor,
    ctx: &Context<'_>,
    interval: Duration,
) -> anyhow::Result<u8> {
    monitor.observe(collector.refresh().await);
    tokio::time::sleep(interval).await;
    monitor.observe(collector.refresh().await);
    print!("{}", render::plain(&monitor, ctx));
    Ok(if monitor.all_up() { 0 } else { EXIT_UNHEALTHY as u8 })
}

/// Restores the terminal however the live view ends (`ratatui::init` also
/// installs a panic hook that restores it).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

async fn live(collector: Collector, mut monitor: Monitor, ctx: &Context<'_>, interval: Duration) -> anyhow::Result<u8> {
    // Refreshes run on their own task so that keys are answered at once.
    let (snapshots_tx, mut snapshots) = mpsc::channel::<Snapshot>(1);
    let refresher = tokio::spawn(refresh_loop(collector, interval, snapshots_tx));

    let mut terminal = ratatui::try_init()?;
    let _guard = TerminalGuard;
    let stop_keys = Arc::new(AtomicBool::new(false));
    let (keys_tx, mut keys) = mpsc::channel::<Event>(16);
    let key_reader = {
        let stop = stop_keys.clone();
        std::thread::spawn(move || read_keys(keys_tx, stop))
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    let outcome = loop {
        terminal.draw(|frame| render::draw(frame, &monitor, ctx))?;
        tokio::select! {
            snapshot = snapshots.recv() => match snapshot {
                Some(snapshot) => monitor.observe(snapshot),
                None => break Err(anyhow::anyhow!("the refresh task stopped")),
            },
            key = keys.recv() => match key {
                Some(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Char('Q')) {
                        break Ok(0);
                    }
                }
                // A resize (or anything else) redraws at the top of the loop.
                Some(_) => {}
                None => break Err(anyhow::anyhow!("the terminal's input ended")),
            },
            _ = tokio::signal::ctrl_c() => break Ok(0),
            _ = terminate.recv() => break Ok(0),
        }
    };
    refresher.abort();
    stop_keys.store(true, Ordering::Relaxed);
    let _ = key_reader.join();
    outcome
}

async fn refresh_loop(mut collector: Collector, interval: Duration, out: mpsc::Sender<Snapshot>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let snapshot = collector.refresh().await;
        if out.send(snapshot).await.is_err() {
            return;
        }
    }
}

/// Terminal events to the live view, until told to stop or it goes away.
fn read_keys(out: mpsc::Sender<Event>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match event::poll(KEY_POLL) {
            Ok(true) => match event::read() {
                Ok(ev) => {
                    if out.blocking_send(ev).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Ok(false) => {}
            Err(_) => return,
        }
    }
}
