//! Which console commands may overlap (see `super::console`).
//!
//! A console runs the commands of its lines concurrently and answers them in
//! the order of the lines. The rule that keeps a script safe: a command waits
//! for every earlier command of the same console that touches one of the
//! same resources, reads and writes alike. A resource is a key (`put`, `get`,
//! `delete`, `cas` touch their key) or a client's request ids (`--request
//! CLIENT:SEQ`: the state machine keeps one client's sequence numbers in
//! order, so two requests of one client never overtake each other). Every
//! other command (`propose`, `status`, `members`, `step-down`, `log`,
//! `help`...) is a barrier: it waits for every earlier command, and every
//! later command waits for it. Commands on different keys may take effect in
//! any order until they are answered.

use super::command::OpsCommand;
use std::collections::HashMap;
use tokio::sync::watch;

/// What a command touches, for ordering.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    Key(String),
    /// The request ids of one client (`--request CLIENT:SEQ`).
    Client(u64),
}

/// How a command is ordered against the others of its console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Footprint {
    /// Waits only for earlier commands sharing one of these resources (and
    /// for barriers).
    Touches(Vec<Resource>),
    /// Waits for everything earlier; everything later waits for it.
    Barrier,
}

impl Footprint {
    pub fn of(command: &OpsCommand) -> Footprint {
        let (key, request) = match command {
            OpsCommand::Put { key, request, .. }
            | OpsCommand::Delete { key, request }
            | OpsCommand::Cas { key, request, .. } => (key, *request),
            OpsCommand::Get { key, .. } => (key, None),
            _ => return Footprint::Barrier,
        };
        let mut touches = vec![Resource::Key(key.clone())];
        touches.extend(request.map(|r| Resource::Client(r.client)));
        Footprint::Touches(touches)
    }
}

/// Signalled when its command has finished: dropping it is the signal.
#[derive(Debug)]
pub struct Done {
    _signal: watch::Sender<()>,
}

/// A finished-or-not command that a later one waits for.
#[derive(Clone, Debug)]
pub struct Waiter {
    /// The command's number in its console (1 for the first admitted).
    pub number: u64,
    finished: watch::Receiver<()>,
}

impl Waiter {
    /// Wait until the command has finished.
    pub async fn wait(mut self) {
        // Nothing is ever sent: `changed` ends (with an error) when `Done` is dropped.
        let _ = self.finished.changed().await;
    }

    fn is_finished(&self) -> bool {
        self.finished.has_changed().is_err()
    }
}

/// A command's place in the order: whom it waits for, and its own signal.
#[derive(Debug)]
pub struct Ticket {
    pub number: u64,
    pub waits_for: Vec<Waiter>,
    pub done: Done,
}

impl Ticket {
    /// Wait for every command this one must follow.
    pub async fn ready(&mut self) {
        for waiter in std::mem::take(&mut self.waits_for) {
            waiter.wait().await;
        }
    }
}

/// The commands of one console admitted so far and not known to be finished.
#[derive(Debug, Default)]
pub struct Order {
    admitted: u64,
    /// The last command to touch each resource since the last barrier.
    last: HashMap<Resource, Waiter>,
    /// Every command admitted since the last barrier.
    since_barrier: Vec<Waiter>,
    barrier: Option<Waiter>,
}

impl Order {
    /// Admit the next command of the console, in the order of its lines.
    pub fn admit(&mut self, footprint: &Footprint) -> Ticket {
        self.forget_finished();
        self.admitted += 1;
        let (tx, rx) = watch::channel(());
        let me = Waiter { number: self.admitted, finished: rx };
        let mut waits_for: Vec<Waiter> = self.barrier.iter().cloned().collect();
        match footprint {
            Footprint::Touches(resources) => {
                for resource in resources {
                    if let Some(earlier) = self.last.insert(resource.clone(), me.clone())
                        && !waits_for.iter().any(|w| w.number == earlier.number)
                    {
                        waits_for.push(earlier);
                    }
                }
                self.since_barrier.push(me);
            }
            Footprint::Barrier => {
                waits_for.append(&mut self.since_barrier);
                self.last.clear();
                self.barrier = Some(me);
            }
        }
        Ticket { number: self.admitted, waits_for, done: Done { _signal: tx } }
    }

    /// Drop what has finished, so a long console keeps no more than its
    /// commands in flight.
    fn forget_finished(&mut self) {
        self.last.retain(|_, w| !w.is_finished());
        self.since_barrier.retain(|w| !w.is_finished());
        if self.barrier.as_ref().is_some_and(Waiter::is_finished) {
            self.barrier = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::parse;

    fn footprint(line: &str) -> Footprint {
        Footprint::of(&parse(line).unwrap().command)
    }

    fn numbers(ticket: &Ticket) -> Vec<u64> {
        let mut n: Vec<u64> = ticket.waits_for.iter().map(|w| w.number).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn key_commands_touch_their_key_and_their_client_and_the_rest_are_barriers() {
        let key = |k: &str| Resource::Key(k.to_owned());
        for (line, touches) in [
            ("put k v", vec![key("k")]),
            ("put k v --json", vec![key("k")]),
            ("get k", vec![key("k")]),
            ("get k --stale", vec![key("k")]),
            ("delete k", vec![key("k")]),
            ("cas k a b", vec![key("k")]),
            ("cas k --absent b", vec![key("k")]),
            ("put k v --request 7:1", vec![key("k"), Resource::Client(7)]),
            ("delete 'two words' --request 7:2", vec![key("two words"), Resource::Client(7)]),
        ] {
            assert_eq!(footprint(line), Footprint::Touches(touches), "{line}");
        }
        for line in [
            "propose v",
            "status",
            "leader",
            "members",
            "log",
            "watch",
            "step-down",
            "health",
            "metrics",
            "help",
            "help put",
            "console",
        ] {
            assert_eq!(footprint(line), Footprint::Barrier, "{line}");
        }
    }

    #[test]
    fn a_command_waits_for_the_earlier_ones_on_its_key_and_for_barriers() {
        let mut order = Order::default();
        let a1 = order.admit(&footprint("put a 1")); // 1
        let b1 = order.admit(&footprint("put b 1")); // 2
        let a2 = order.admit(&footprint("get a")); // 3
        let a3 = order.admit(&footprint("cas a 1 2")); // 4
        assert_eq!(numbers(&a1), Vec::<u64>::new());
        assert_eq!(numbers(&b1), Vec::<u64>::new(), "another key does not wait");
        assert_eq!(numbers(&a2), vec![1], "a read waits for the write before it");
        assert_eq!(numbers(&a3), vec![3], "and the next command on the key waits for the read");
        let status = order.admit(&footprint("status")); // 5
        assert_eq!(numbers(&status), vec![1, 2, 3, 4], "a barrier waits for everything before it");
        let c = order.admit(&footprint("get c")); // 6
        let a4 = order.admit(&footprint("delete a")); // 7
        assert_eq!(numbers(&c), vec![5], "everything after a barrier waits for it");
        assert_eq!(numbers(&a4), vec![5]);
        let propose = order.admit(&footprint("propose x")); // 8
        assert_eq!(numbers(&propose), vec![5, 6, 7]);
        let log = order.admit(&footprint("log")); // 9
        assert_eq!(numbers(&log), vec![8], "two barriers in a row");
        drop((a1, b1, a2, a3, status, c, a4, propose, log));
    }

    #[test]
    fn requests_of_one_client_keep_their_order_across_keys() {
        let mut order = Order::default();
        let _first = order.admit(&footprint("put a 1 --request 7:1"));
        let other_client = order.admit(&footprint("put b 1 --request 8:1"));
        let same_client = order.admit(&footprint("put c 1 --request 7:2"));
        let both = order.admit(&footprint("put b 2 --request 7:3"));
        assert_eq!(numbers(&other_client), Vec::<u64>::new());
        assert_eq!(numbers(&same_client), vec![1]);
        assert_eq!(numbers(&both), vec![2, 3], "its key's last command and its client's");
    }

    #[tokio::test]
    async fn finished_commands_are_forgotten_and_a_waiter_ends_when_its_command_does() {
        let mut order = Order::default();
        let mut tickets: Vec<Ticket> = (0..100).map(|i| order.admit(&footprint(&format!("get k{i}")))).collect();
        assert_eq!(order.since_barrier.len(), 100);
        let mut barrier = order.admit(&footprint("status"));
        assert_eq!(barrier.waits_for.len(), 100);
        tickets.clear(); // every `Done` dropped: all 100 finished
        barrier.ready().await;
        drop(barrier);
        let next = order.admit(&footprint("get k1"));
        assert!(next.waits_for.is_empty(), "{:?}", next.waits_for);
        assert_eq!((order.last.len(), order.since_barrier.len(), order.barrier.is_none()), (1, 1, true));
    }
}
