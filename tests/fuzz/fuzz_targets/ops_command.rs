//! Operator command lines from arbitrary bytes (invalid UTF-8 is replaced,
//! as a lossy reader would): the whole input as the subsystem name or exec
//! command of one SSH channel, and each line as a console line.
//!
//! Properties: no panic; an error is one line (a console answers each
//! request with exactly one line); a parsed command names an entry of the
//! help table and its authorization agrees with that table; and the
//! normalized line recorded in the audit log parses to the same command.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paxos::ops::command::command_help;
use paxos::ops::{Role, authorize, parse};
use paxos::ssh::server::is_operator_command;
use std::borrow::Cow;

fuzz_target!(|data: &[u8]| {
    let text = match std::str::from_utf8(data) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(data),
    };
    // As a subsystem name; the server hands only "paxos ..." to the
    // operator service, the CLI parses any line.
    let _ = is_operator_command(&text);
    check_line(&text);
    // As console input: lines split like AsyncBufReadExt::lines, trimmed,
    // blank lines and comments skipped (ops::exec::run_console).
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_line(line);
    }
});

fn check_line(line: &str) {
    let invocation = match parse(line) {
        Ok(invocation) => invocation,
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "a usage error spans lines: {message:?}");
            return;
        }
    };
    let command = &invocation.command;
    let Some(help) = command_help(command.name()) else {
        panic!("{command:?} is not in the help table");
    };
    assert_eq!(command.is_read_only(), help.read_only, "{line:?}");
    assert_eq!(authorize(Role::Reader, command).is_ok(), command.is_read_only(), "{line:?}");
    assert!(authorize(Role::Operator, command).is_ok());
    // Every log mutation changes the cluster (step-down changes only the leader).
    assert!(command.to_op().is_none() || !command.is_read_only(), "{line:?}");
    assert!(!invocation.line.contains('\n'), "the audit line spans lines: {:?}", invocation.line);
    match parse(&invocation.line) {
        Ok(again) => {
            assert_eq!(again.command, invocation.command, "{line:?} normalized to {:?}", invocation.line);
            assert_eq!(again.json, invocation.json, "{line:?} normalized to {:?}", invocation.line);
        }
        Err(e) => panic!("{line:?} parsed, but its normalized form {:?} does not: {e}", invocation.line),
    }
}
