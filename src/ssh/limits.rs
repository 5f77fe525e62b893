//! Who may open a connection to the embedded SSH server, and for how long
//! an unauthenticated one may stay.
//!
//! Every accepted TCP connection must first be admitted: it takes a slot
//! under the total cap, a slot under the cap on unauthenticated
//! connections (node-wide and per source address) and one token from its
//! source's bucket. Authenticating gives back the unauthenticated slots and
//! the token, so a key holder is never throttled by its own successful
//! connections; what the rate limit bounds is connections that never
//! authenticate, the DHEat flood (CVE-2002-20001) and its kin, whose cost
//! to the server is the key exchange itself.
//!
//! Nothing here ever closes an authenticated connection: peers and
//! operators already in stay in, whatever happens at the door.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The server's admission figures (README: "SSH server limits and
/// algorithms").
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionLimits {
    /// A connection not authenticated this long after it was accepted is
    /// closed (OpenSSH's LoginGraceTime).
    pub auth_timeout: Duration,
    /// Connections open at once, authenticated or not.
    pub max_connections: usize,
    /// Authenticated operator and reader connections open at once. With
    /// the unauthenticated cap it stays below `max_connections`, so the
    /// slots left over are always there for peers.
    pub max_client_connections: usize,
    /// Unauthenticated connections open at once, from all sources
    /// (OpenSSH's MaxStartups).
    pub max_unauthenticated: usize,
    /// Unauthenticated connections open at once from one source address
    /// (OpenSSH's PerSourceMaxStartups).
    pub max_unauthenticated_per_source: usize,
    /// New connections one source may open at once before it is throttled.
    pub source_burst: u32,
    /// New connections per second one source regains after its burst.
    pub source_per_sec: u32,
}

impl ConnectionLimits {
    /// - 20 s to authenticate: OpenSSH with an agent takes well under a
    ///   second on a LAN; a peer's own handshake step times out at 10 s.
    /// - 1024 connections: `paxos bench` opens up to 1024 consoles spread
    ///   over the nodes, plus the peers.
    /// - 896 operator and reader connections: 1024 less 64 unauthenticated
    ///   less 64 kept for peers.
    /// - 64 unauthenticated, 20 per source: `paxos bench` has 16 handshakes
    ///   in flight at once, leaving room for peers redialling from the same
    ///   address.
    /// - a burst of 20 then 4 per second: ssh-audit's DHEat check opens
    ///   connections for 1.5 s and warns above 20 per second; this admits
    ///   at most 26 in that time (17 per second).
    pub const DEFAULT: ConnectionLimits = ConnectionLimits {
        auth_timeout: Duration::from_secs(20),
        max_connections: 1024,
        max_client_connections: 896,
        max_unauthenticated: 64,
        max_unauthenticated_per_source: 20,
        source_burst: 20,
        source_per_sec: 4,
    };

    /// Refuses figures that would shut everyone out or never time out.
    pub fn validate(&self) -> Result<(), String> {
        let zero = [
            (self.auth_timeout.is_zero(), "auth_timeout"),
            (self.max_connections == 0, "max_connections"),
            (self.max_client_connections == 0, "max_client_connections"),
            (self.max_unauthenticated == 0, "max_unauthenticated"),
            (self.max_unauthenticated_per_source == 0, "max_unauthenticated_per_source"),
            (self.source_burst == 0, "source_burst"),
            (self.source_per_sec == 0, "source_per_sec"),
        ];
        if let Some((_, name)) = zero.iter().find(|(is_zero, _)| *is_zero) {
            return Err(format!("{name} must be above zero, or no client could ever connect"));
        }
        if self.max_client_connections.saturating_add(self.max_unauthenticated) >= self.max_connections {
            return Err(format!(
                "max_client_connections ({}) plus max_unauthenticated ({}) must stay below max_connections ({}), \
                 or operators could leave no slot for a peer",
                self.max_client_connections, self.max_unauthenticated, self.max_connections
            ));
        }
        Ok(())
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::DEFAULT
    }
}

/// The unit the per-source limits count: an IPv4 address, or an IPv6 /64
/// (one host usually holds a whole /64, so counting single IPv6 addresses
/// would let it walk around every per-source limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => Source(IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1)))),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Why a connection was refused at the door.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Connections { max: usize },
    Unauthenticated { max: usize },
    SourceUnauthenticated { max: usize },
    SourceRate { burst: u32, per_sec: u32 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Connections { max } => write!(f, "the node already has {max} connections (the cap)"),
            Refusal::Unauthenticated { max } => {
                write!(f, "the node already has {max} unauthenticated connections (the cap)")
            }
            Refusal::SourceUnauthenticated { max } => {
                write!(f, "that source already has {max} unauthenticated connections (the per-source cap)")
            }
            Refusal::SourceRate { burst, per_sec } => write!(
                f,
                "that source opens connections too fast (a burst of {burst}, then {per_sec} per second, \
                 not counting those that authenticate)"
            ),
        }
    }
}

/// A refused connection and whether to log it: a flood would otherwise
/// flood the log too, so each source is logged at most once a second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub source: Source,
    pub reason: Refusal,
    pub log: bool,
    /// Refusals of this source not logged since its last logged one.
    pub unlogged: u64,
}

const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Sources tracked before the table is swept of idle ones.
const SWEEP_ABOVE: usize = 1024;

struct SourceState {
    tokens: f64,
    refilled: Instant,
    unauthenticated: usize,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl SourceState {
    fn refill(&mut self, limits: &ConnectionLimits, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(limits.source_per_sec)).min(f64::from(limits.source_burst));
        self.refilled = now;
    }

    /// Nothing to remember: full bucket, no connection, no recent log.
    fn idle(&mut self, limits: &ConnectionLimits, now: Instant) -> bool {
        self.refill(limits, now);
        self.unauthenticated == 0
            && self.tokens >= f64::from(limits.source_burst)
            && self.last_logged.is_none_or(|at| now.saturating_duration_since(at) >= REFUSAL_LOG_INTERVAL)
    }
}

struct Counts {
    connections: usize,
    clients: usize,
    unauthenticated: usize,
    sources: HashMap<Source, SourceState>,
    sweep_above: usize,
}

/// The server's door: shared by the accept loop and every connection.
pub struct Admission {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Arc<Admission> {
        let counts = Counts {
            connections: 0,
            clients: 0,
            unauthenticated: 0,
            sources: HashMap::new(),
            sweep_above: SWEEP_ABOVE,
        };
        Arc::new(Admission { limits, counts: Mutex::new(counts) })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent under a panic elsewhere: every update
        // is a few plain assignments.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open connections, unauthenticated ones, and operator and reader ones.
    pub fn open(&self) -> (usize, usize, usize) {
        let counts = self.lock();
        (counts.connections, counts.unauthenticated, counts.clients)
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Ticket, Refused> {
        let limits = &self.limits;
        let source = Source::of(ip);
        let mut counts = self.lock();
        if counts.sources.len() > counts.sweep_above {
            counts.sources.retain(|_, s| !s.idle(limits, now));
            // Amortized: the next sweep waits until the table doubles.
            counts.sweep_above = SWEEP_ABOVE.max(2 * counts.sources.len());
        }
        let (connections, unauthenticated) = (counts.connections, counts.unauthenticated);
        let state = counts.sources.entry(source).or_insert_with(|| SourceState {
            tokens: f64::from(limits.source_burst),
            refilled: now,
            unauthenticated: 0,
            last_logged: None,
            unlogged: 0,
        });
        state.refill(limits, now);
        let refusal = if connections >= limits.max_connections {
            Some(Refusal::Connections { max: limits.max_connections })
        } else if unauthenticated >= limits.max_unauthenticated {
            Some(Refusal::Unauthenticated { max: limits.max_unauthenticated })
        } else if state.unauthenticated >= limits.max_unauthenticated_per_source {
            Some(Refusal::SourceUnauthenticated { max: limits.max_unauthenticated_per_source })
        } else if state.tokens < 1.0 {
            Some(Refusal::SourceRate { burst: limits.source_burst, per_sec: limits.source_per_sec })
        } else {
            None
        };
        if let Some(reason) = refusal {
            let log = state.last_logged.is_none_or(|at| now.saturating_duration_since(at) >= REFUSAL_LOG_INTERVAL);
            let unlogged = state.unlogged;
            if log {
                state.last_logged = Some(now);
                state.unlogged = 0;
            } else {
                state.unlogged += 1;
            }
            return Err(Refused { source, reason, log, unlogged });
        }
        state.tokens -= 1.0;
        state.unauthenticated += 1;
        counts.connections += 1;
        counts.unauthenticated += 1;
        Ok(Ticket { admission: self.clone(), source, authenticated: false, client: false })
    }
}

/// One admitted connection's hold on its slots; dropping it (when the
/// connection ends) gives them back.
pub struct Ticket {
    admission: Arc<Admission>,
    source: Source,
    authenticated: bool,
    /// Holds one of the operator and reader slots.
    client: bool,
}

impl Ticket {
    pub fn max_client_connections(&self) -> usize {
        self.admission.limits.max_client_connections
    }

    pub fn auth_timeout(&self) -> Duration {
        self.admission.limits.auth_timeout
    }

    /// Takes an operator and reader slot for this connection, before its
    /// operator or reader key is accepted; `Err(cap)` when none is free.
    pub fn claim_client_slot(&mut self) -> Result<(), usize> {
        if self.client {
            return Ok(());
        }
        let max = self.admission.limits.max_client_connections;
        let mut counts = self.admission.lock();
        if counts.clients >= max {
            return Err(max);
        }
        counts.clients += 1;
        self.client = true;
        Ok(())
    }

    /// The connection authenticated: it leaves the unauthenticated counts
    /// and its source gets its token back.
    pub fn authenticated(&mut self, now: Instant) {
        if self.authenticated {
            return;
        }
        self.authenticated = true;
        let limits = &self.admission.limits;
        let mut counts = self.admission.lock();
        counts.unauthenticated = counts.unauthenticated.saturating_sub(1);
        if let Some(state) = counts.sources.get_mut(&self.source) {
            state.unauthenticated = state.unauthenticated.saturating_sub(1);
            state.refill(limits, now);
            state.tokens = (state.tokens + 1.0).min(f64::from(limits.source_burst));
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.connections = counts.connections.saturating_sub(1);
        if self.client {
            counts.clients = counts.clients.saturating_sub(1);
        }
        if !self.authenticated {
            counts.unauthenticated = counts.unauthenticated.saturating_sub(1);
            if let Some(state) = counts.sources.get_mut(&self.source) {
                state.unauthenticated = state.unauthenticated.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
