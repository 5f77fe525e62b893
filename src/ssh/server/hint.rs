//! What a client gets for a shell or an exec request that is not a
//! `paxos ...` command line: one line saying how to ask.

/// Exit status for a shell or a command that is not an operator command
/// (`ops`' usage status).
pub(super) const EXIT_USAGE: u32 = 2;

/// The one line sent to a client that asked for a shell (`command` None)
/// or exec'd something other than a `paxos ...` command line.
pub fn usage_hint(command: Option<&[u8]>) -> String {
    // Echo the command back as the suggestion only when it is short plain
    // words: never raw control bytes to someone's terminal.
    let plain = |c: &u8| c.is_ascii_alphanumeric() || b" -_.=:,/@".contains(c);
    let suggestion = match command {
        Some(words) if words.len() <= 200 && words.iter().all(plain) => {
            String::from_utf8_lossy(words).trim().to_string()
        }
        _ => String::new(),
    };
    let suggestion = if suggestion.is_empty() { "status".to_string() } else { suggestion };
    let what = match command {
        None => "no shell here".to_string(),
        Some(words) => format!("{} is not run by a shell here", quoted(words)),
    };
    format!("paxos: {what}; use: ssh HOST -s paxos {suggestion} (ssh HOST -s paxos help lists the commands)\n")
}

/// Client-sent words for a message or a log line: quoted with escapes, and
/// cut to their first 60 bytes.
pub(super) fn quoted(words: &[u8]) -> String {
    const SHOWN: usize = 60;
    let shown = String::from_utf8_lossy(&words[..words.len().min(SHOWN)]).into_owned();
    let more = if words.len() > SHOWN { "..." } else { "" };
    format!("{shown:?}{more}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_become_the_suggestion() {
        let hint = usage_hint(Some(b"get k1 --json"));
        assert_eq!(
            hint,
            "paxos: \"get k1 --json\" is not run by a shell here; use: ssh HOST -s paxos get k1 --json \
             (ssh HOST -s paxos help lists the commands)\n"
        );
    }

    #[test]
    fn anything_else_suggests_status_and_is_escaped_and_cut() {
        for odd in [&b""[..], b"   ", b"rm -rf *", b"\x1b[2Jx", &[0xff, 0xfe], &[b'a'; 500]] {
            let hint = usage_hint(Some(odd));
            assert!(hint.contains("use: ssh HOST -s paxos status "), "{hint}");
            assert!(!hint.contains('\x1b') && hint.len() < 250 && hint.ends_with('\n'), "{hint}");
            assert_eq!(hint.lines().count(), 1, "{hint}");
        }
        assert!(usage_hint(None).starts_with("paxos: no shell here; use: ssh HOST -s paxos status "));
    }
}
