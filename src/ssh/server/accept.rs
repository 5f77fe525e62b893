//! The accept loop: every TCP connection passes the admission limits
//! before russh sees it, and is closed if it has not authenticated within
//! the deadline.

use super::{Connection, Shared};
use crate::ssh::limits::{Admission, Refused, Ticket};
use russh::Disconnect;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

/// Accepts connections until `shutdown` is cancelled.
pub(super) async fn serve<M: DeserializeOwned + Send + 'static>(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    admission: Arc<Admission>,
    shared: Arc<Shared<M>>,
    shutdown: CancellationToken,
) {
    let node = shared.node;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before it
                // was accepted: the listener itself is fine.
                warn!(node, "accepting a connection failed: {e}; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_RETRY) => continue,
                }
            }
        };
        match admission.admit(addr.ip(), Instant::now()) {
            Ok(ticket) => {
                let span = tracing::info_span!("node", id = node);
                let connection = serve_connection(shared.clone(), config.clone(), tcp, addr, ticket);
                tokio::spawn(connection.instrument(span));
            }
            Err(refused) => refuse_connection(node, tcp, addr, &refused),
        }
    }
}

/// Pause after a failed accept, so running out of descriptors does not
/// spin the loop.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Closes a connection refused at the door. The line before the close is
/// what OpenSSH shows with `-v`; it is not an SSH banner, so scanners do
/// not count the connection as served.
fn refuse_connection(node: u64, tcp: TcpStream, addr: SocketAddr, refused: &Refused) {
    if refused.log {
        let unlogged = match refused.unlogged {
            0 => String::new(),
            n => format!(" ({n} more refused from {} since the last line)", refused.source),
        };
        warn!(node, "refusing connection from {addr}: {}{unlogged}", refused.reason);
    }
    let _ = tcp.try_write(b"paxos: too many connections from your address; retry later\r\n");
}

/// Runs one admitted connection until it ends, closing it if it has not
/// authenticated within the deadline.
async fn serve_connection<M: DeserializeOwned + Send + 'static>(
    shared: Arc<Shared<M>>,
    config: Arc<russh::server::Config>,
    tcp: TcpStream,
    addr: SocketAddr,
    ticket: Ticket,
) {
    let node = shared.node;
    let auth_timeout = ticket.auth_timeout();
    if config.nodelay
        && let Err(e) = tcp.set_nodelay(true)
    {
        debug!("set_nodelay for {addr}: {e}");
    }
    // A second descriptor for the socket: shutting it down ends the
    // session wherever russh is in it, even mid key exchange or while the
    // client sends nothing at all.
    let closer = match tcp.as_fd().try_clone_to_owned() {
        Ok(fd) => std::net::TcpStream::from(fd),
        Err(e) => {
            warn!(node, "closing connection from {addr}: cannot watch it: {e}");
            return;
        }
    };
    let (authenticated_tx, authenticated_rx) = oneshot::channel();
    tokio::spawn(
        async move {
            tokio::select! {
                // Authenticated, or the session ended (the handler dropped
                // the sender) first.
                _ = authenticated_rx => {}
                _ = tokio::time::sleep(auth_timeout) => {
                    warn!(node, "closing connection from {addr}: not authenticated within {} s", auth_timeout.as_secs());
                    let _ = closer.shutdown(Shutdown::Both);
                }
            }
        }
        .in_current_span(),
    );
    let handler = Connection {
        shared: shared.clone(),
        addr: addr.to_string(),
        principal: None,
        key_fingerprint: String::new(),
        key: None,
        idle: HashMap::new(),
        ticket,
        authenticated: Some(authenticated_tx),
    };
    let session = match russh::server::run_stream(config, tcp, handler).await {
        Ok(session) => session,
        Err(e) => {
            debug!("ssh connection from {addr} ended before key exchange: {e}");
            return;
        }
    };
    let handle = session.handle();
    tokio::select! {
        result = session => match result {
            Ok(()) => debug!("ssh connection from {addr} closed"),
            Err(e) => debug!("ssh connection from {addr} ended: {e}"),
        },
        _ = shared.shutdown.cancelled() => {
            let _ = handle.disconnect(Disconnect::ByApplication, "node shutting down".into(), String::new()).await;
        }
    }
}
