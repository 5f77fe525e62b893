//! `paxos monitor` in a real terminal (tmux) against real daemons: the rows
//! appear, a step-down shows as a new leader and a leader-change event, a
//! node killed and restarted shows as lost and back, a resize redraws, and
//! `q` quits leaving the alternate screen. SKIPPED (said loudly) without tmux.

mod support_cluster;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use support_cluster::*;

/// A private tmux server (its own socket in a temp dir), killed on drop.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

const SESSION: &str = "monitor";

impl Tmux {
    fn start(width: u16, height: u16) -> Tmux {
        let dir = tempfile::Builder::new().prefix("paxos-tmux-").tempdir().expect("temp dir");
        let tmux = Tmux { socket: dir.path().join("socket"), _dir: dir };
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "sh",
        ]);
        assert_eq!(out.code, Some(0), "tmux new-session\n{}", out.show());
        tmux
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(args).env("LANG", "C.UTF-8");
        cmd
    }

    fn run(&self, args: &[&str]) -> Out {
        run(self.command(args))
    }

    /// Types `text` into the pane, then Enter if asked.
    fn type_text(&self, text: &str, enter: bool) {
        let out = self.run(&["send-keys", "-t", SESSION, "-l", text]);
        assert_eq!(out.code, Some(0), "{}", out.show());
        if enter {
            let out = self.run(&["send-keys", "-t", SESSION, "Enter"]);
            assert_eq!(out.code, Some(0), "{}", out.show());
        }
    }

    /// The visible screen as text.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", SESSION]).stdout
    }

    fn display(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", SESSION, format]).stdout.trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ends the server this test started (and the shell and monitor in it).
        let _ = self.run(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success())
}

fn quoted(path: &std::path::Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// The table on screen: for each node id, (up, marked as leader).
fn table(screen: &str) -> Vec<(u64, bool, bool)> {
    let mut rows = Vec::new();
    for line in screen.lines() {
        for id in 1..=3u64 {
            let name = format!(" {id} node{id} ");
            let Some(at) = line.find(&name) else { continue };
            let rest = &line[at + name.len()..];
            let up = rest.split_whitespace().nth(1) == Some("up");
            let marked = line[..at].contains('*');
            rows.push((id, up, marked));
        }
    }
    rows
}

/// The leader if the screen shows every node up and exactly one marked.
fn all_up_with_leader(screen: &str) -> Option<u64> {
    let rows = table(screen);
    let ids: BTreeSet<u64> = rows.iter().map(|r| r.0).collect();
    if rows.len() != 3 || ids.len() != 3 || !rows.iter().all(|r| r.1) {
        return None;
    }
    let marked: Vec<u64> = rows.iter().filter(|r| r.2).map(|r| r.0).collect();
    match marked.as_slice() {
        [leader] => Some(*leader),
        _ => None,
    }
}

/// The title's refresh time ("HH:MM:SS.mmm UTC").
fn refresh_time(screen: &str) -> Option<String> {
    let title = screen.lines().find(|l| l.contains("paxos monitor"))?;
    let end = title.find(" UTC")?;
    Some(title[..end].rsplit(' ').next()?.to_string())
}

fn context(tmux: &Tmux, cluster: &Cluster) -> String {
    format!("screen:\n{}\n{}", tmux.screen(), cluster.logs())
}

fn operator_logins(cluster: &Cluster) -> Vec<usize> {
    cluster.nodes.iter().map(|n| cluster.log(n.id).matches("authenticated operator").count()).collect()
}

#[test]
fn the_live_view_follows_a_leader_change_a_lost_node_and_a_resize_then_quits() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed; the monitor's terminal test did not run (.ci/run installs it)");
        return;
    }
    let mut cluster = Cluster::start(3);
    let (leader, _) = cluster.wait_for_leader();
    let tmux = Tmux::start(120, 40);
    let line = format!(
        "{} --cluster {} -i {} monitor --interval-ms 300; echo \"monitor exited $?\"",
        quoted(std::path::Path::new(PAXOS)),
        quoted(&cluster.inventory),
        quoted(&cluster.operator)
    );
    tmux.type_text(&line, true);

    let shown = eventually(
        "the monitor to show every node up and one leader",
        || all_up_with_leader(&tmux.screen()),
        || context(&tmux, &cluster),
    );
    assert_eq!(shown, leader, "{}", context(&tmux, &cluster));
    assert_eq!(tmux.display("#{alternate_on}"), "1", "the monitor uses the alternate screen");

    // Several refreshes over the same SSH sessions: no new logins.
    let logins = operator_logins(&cluster);
    let mut seen = BTreeSet::new();
    eventually(
        "four more refreshes",
        || {
            seen.extend(refresh_time(&tmux.screen()));
            (seen.len() > 4).then_some(())
        },
        || context(&tmux, &cluster),
    );
    assert_eq!(operator_logins(&cluster), logins, "a refresh must not log in again\n{}", context(&tmux, &cluster));

    // A step-down: the screen shows the new leader and the change.
    let out = cluster.cli_ok(&["step-down"]);
    let new_leader = eventually(
        "the monitor to show a new leader and a leader-change event",
        || {
            let screen = tmux.screen();
            let now = all_up_with_leader(&screen).filter(|l| *l != leader)?;
            screen.contains(&format!("leader changed: node {leader} -> node {now}")).then_some(now)
        },
        || format!("step-down said {}\n{}", out.stdout, context(&tmux, &cluster)),
    );
    assert!(tmux.screen().contains(&format!("node {leader} stepped down")), "{}", context(&tmux, &cluster));

    // A resize redraws at the new size: narrower than the table, then
    // wider again.
    for (width, height) in [(60u16, 15u16), (104, 30), (120, 40)] {
        let out = tmux.run(&["resize-window", "-t", SESSION, "-x", &width.to_string(), "-y", &height.to_string()]);
        assert_eq!(out.code, Some(0), "{}", out.show());
        eventually(
            &format!("the monitor to redraw at {width}x{height}"),
            || {
                let screen = tmux.screen();
                let lines: Vec<&str> = screen.lines().collect();
                // The events box's bottom border spans the new width.
                let framed =
                    lines.iter().any(|l| l.starts_with('└') && l.ends_with('┘') && l.chars().count() == width as usize);
                let fits = lines.iter().all(|l| l.chars().count() <= width as usize);
                let rows_ok = width < 104 || all_up_with_leader(&screen) == Some(new_leader);
                (tmux.display("#{pane_width}") == width.to_string() && framed && fits && rows_ok).then_some(())
            },
            || context(&tmux, &cluster),
        );
    }

    // A follower dies and comes back: lost, then back, on the same screen.
    let victim = cluster.nodes.iter().map(|n| n.id).find(|id| *id != new_leader).unwrap();
    cluster.kill(victim);
    eventually(
        "the monitor to show the killed node down and lost",
        || {
            let screen = tmux.screen();
            let down = table(&screen).iter().any(|r| r.0 == victim && !r.1);
            (down && screen.contains(&format!("node {victim} lost"))).then_some(())
        },
        || context(&tmux, &cluster),
    );
    cluster.restart(victim);
    eventually(
        "the monitor to show the restarted node back",
        || {
            let screen = tmux.screen();
            (all_up_with_leader(&screen).is_some() && screen.contains(&format!("node {victim} back"))).then_some(())
        },
        || context(&tmux, &cluster),
    );

    // `q` quits: the shell prints the exit status, the alternate screen is gone.
    tmux.type_text("q", false);
    eventually(
        "the monitor to exit and the shell to come back",
        || {
            let screen = tmux.screen();
            (screen.contains("monitor exited 0") && tmux.display("#{alternate_on}") == "0").then_some(screen)
        },
        || context(&tmux, &cluster),
    );
    let screen = tmux.screen();
    assert!(table(&screen).is_empty(), "the monitor's table is still on screen:\n{screen}");
    // The shell's prompt follows the exit status.
    let after: Vec<&str> = screen.lines().skip_while(|l| !l.contains("monitor exited 0")).skip(1).collect();
    assert!(after.first().is_some_and(|prompt| !prompt.trim().is_empty()), "no shell prompt:\n{screen}");

    // Ctrl-C quits as cleanly.
    tmux.type_text("clear", true);
    tmux.type_text(&line, true);
    eventually("the monitor to start again", || all_up_with_leader(&tmux.screen()), || context(&tmux, &cluster));
    let out = tmux.run(&["send-keys", "-t", SESSION, "C-c"]);
    assert_eq!(out.code, Some(0), "{}", out.show());
    eventually(
        "the monitor to exit on Ctrl-C",
        || {
            let screen = tmux.screen();
            (screen.contains("monitor exited 0") && tmux.display("#{alternate_on}") == "0").then_some(())
        },
        || context(&tmux, &cluster),
    );
    assert!(table(&tmux.screen()).is_empty(), "{}", context(&tmux, &cluster));
}
