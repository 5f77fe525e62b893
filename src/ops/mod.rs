//! Operator commands, shared by the SSH subsystem (`ssh node1 -s paxos
//! status`) and the `paxos` CLI: parse a command line (`command`), check the
//! caller's role (`authorize`), run it against the node (`NodeApi`, `exec`),
//! answer in text or JSON (`render`), and audit mutations (`audit`).

pub mod api;
pub mod audit;
pub mod command;
pub mod console;
pub mod exec;
pub mod health;
pub mod members;
pub mod order;
pub mod quote;
pub mod render;

#[cfg(test)]
mod tests;

pub use api::{
    LogEntry, MemberInfo, MembershipView, NodeApi, NodeError, NodeStatus, PeerProgress, ReadValue, ReplicaRole,
    RequestId, Submitted, WatchReceiver,
};
pub use audit::AuditLog;
pub use command::{COMMANDS, CommandHelp, Invocation, OpsCommand, UsageError, parse};
pub use console::{MAX_LINE_BYTES, run_console};
pub use exec::{Context, escape_controls, execute, run_line};

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Exit statuses of an operator command.
pub const EXIT_OK: i32 = 0;
/// The node refused or failed the command for good.
pub const EXIT_FAILED: i32 = 1;
/// The line is not a command.
pub const EXIT_USAGE: i32 = 2;
/// The caller's key may not run the command.
pub const EXIT_DENIED: i32 = 3;
/// No leader, not the leader, timed out or shutting down: retry (a mutation
/// with the same request id), here later or on another node.
pub const EXIT_UNAVAILABLE: i32 = 4;
/// The command failed inside the node (a bug, e.g. a panic, caught and
/// logged); the node keeps serving. sysexits' EX_SOFTWARE.
pub const EXIT_INTERNAL: i32 = 70;

/// What an authenticated operator key may do. The SSH layer maps its
/// principal to one of these (peers never reach operator commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every command.
    Operator,
    /// Commands that change neither the log nor the leadership.
    Reader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Operator => "operator",
            Role::Reader => "reader",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("permission denied: `{command}` changes the cluster and needs an operator key; this key is a {role}")]
pub struct Denied {
    pub command: &'static str,
    pub role: Role,
}

pub fn authorize(role: Role, command: &OpsCommand) -> Result<(), Denied> {
    match role {
        Role::Operator => Ok(()),
        Role::Reader if command.is_read_only() => Ok(()),
        Role::Reader => Err(Denied { command: command.name(), role }),
    }
}

/// Why an operator command did not succeed.
#[derive(Debug, Error)]
pub enum OpsError {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A retried request whose sequence number the client already moved past:
    /// the state machine no longer keeps its result.
    #[error(
        "request {request} is older than this client's last request (seq {last_seq}); its result is no longer \
         kept, so use a new request id"
    )]
    StaleRequest { request: String, last_seq: u64 },
    /// A command that cannot run here (e.g. `watch` inside a console).
    #[error("{0}")]
    NotHere(String),
    /// A membership change refused, before the log or by the state machine.
    #[error("refused: {0}")]
    Refused(String),
    /// `health` found problems (listed in its answer).
    #[error("unhealthy: {problems} problem(s), listed above")]
    Unhealthy { problems: usize },
    #[error("cannot write the answer: {0}")]
    Output(#[from] std::io::Error),
    /// Console input that is not a line of text (too long, not UTF-8).
    #[error("{0}")]
    Input(String),
    /// The command failed inside the node; it was stopped and logged.
    #[error(
        "internal error: `{command}` failed inside the node ({reason}); only this command was stopped and the node \
         keeps serving; the node's log has the details"
    )]
    Internal { command: &'static str, reason: String },
}

impl OpsError {
    pub fn exit_code(&self) -> i32 {
        match self {
            OpsError::Usage(_) | OpsError::NotHere(_) | OpsError::Input(_) => EXIT_USAGE,
            OpsError::Internal { .. } => EXIT_INTERNAL,
            OpsError::Unhealthy { .. } => health::EXIT_UNHEALTHY,
            OpsError::Denied(_) => EXIT_DENIED,
            OpsError::Node(e) if e.is_retryable() => EXIT_UNAVAILABLE,
            OpsError::Node(_) | OpsError::StaleRequest { .. } | OpsError::Output(_) | OpsError::Refused(_) => {
                EXIT_FAILED
            }
        }
    }

    /// `{"error": {"kind": ..., "message": ..., ...}}`, for `--json` answers.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = match self {
            OpsError::Node(e) => serde_json::to_value(e).unwrap_or_default(),
            OpsError::Usage(e) => serde_json::json!({"kind": "usage", "usage": e.usage}),
            OpsError::Denied(_) => serde_json::json!({"kind": "denied"}),
            OpsError::StaleRequest { last_seq, .. } => {
                serde_json::json!({"kind": "stale_request", "last_seq": last_seq})
            }
            OpsError::NotHere(_) => serde_json::json!({"kind": "not_here"}),
            OpsError::Output(_) => serde_json::json!({"kind": "output"}),
            OpsError::Input(_) => serde_json::json!({"kind": "input"}),
            OpsError::Internal { .. } => serde_json::json!({"kind": "internal"}),
            OpsError::Refused(reason) => serde_json::json!({"kind": "refused", "reason": reason}),
            OpsError::Unhealthy { problems } => serde_json::json!({"kind": "unhealthy", "problems": problems}),
        };
        error["message"] = self.to_string().into();
        serde_json::json!({ "error": error })
    }
}
