//! Shell-style words. OpenSSH joins the words after `ssh host -s` with
//! single spaces, so a value with a space in it survives only if it is
//! quoted inside the line: `ssh node1 -s "paxos cas k 'old value' new"`.
//! Command lines and console lines are split the way a POSIX shell splits
//! words, without expansion:
//!
//! - `'...'` keeps everything up to the next `'` as it is;
//! - `"..."` keeps everything up to the next unescaped `"`; inside it a
//!   backslash escapes only `"`, `\`, `$` and `` ` ``;
//! - outside quotes a backslash makes the next character an ordinary one;
//! - quoted and unquoted parts next to each other form one word
//!   (`it'"'"'s`), and `''` is an empty word.
//!
//! - `$'...'` (ANSI-C quoting, as in bash) keeps text up to the next
//!   unescaped `'`, with escapes: `\n` `\r` `\t` `\a` `\b` `\e` `\f` `\v`
//!   `\\` `\'` `\"`, `\xHH` and `\uHHHH` (a character by its code point).
//!
//! There are no variables, globs or comments: `$HOME` and `*` are text.
//! `quote` is the inverse: a word that needs it comes back single-quoted,
//! or as `$'...'` when it holds a control character, so that a quoted line
//! is always one line.

use std::fmt;

/// A line that cannot be split into words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("unterminated {kind} quote: the {kind} quote at character {at} is never closed")]
    Unterminated { kind: QuoteKind, at: usize },
    #[error("the line ends with a backslash that escapes nothing")]
    TrailingBackslash,
    #[error("bad escape in $'...' at character {at}: {what}")]
    BadEscape { at: usize, what: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteKind {
    Single,
    Double,
}

impl fmt::Display for QuoteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuoteKind::Single => "single",
            QuoteKind::Double => "double",
        })
    }
}

/// Split `line` into words, removing quotes and escapes.
pub fn split(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has begun: `''` is a word although it is empty.
    let mut in_word = false;
    let mut chars = line.chars().enumerate().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '$' if matches!(chars.peek(), Some((_, '\''))) => {
                chars.next();
                in_word = true;
                ansi_c(&mut chars, at, &mut word)?;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => word.push(c),
                        None => return Err(SplitError::Unterminated { kind: QuoteKind::Single, at: at + 1 }),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c @ ('"' | '\\' | '$' | '`'))) => word.push(c),
                            Some((_, c)) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::Unterminated { kind: QuoteKind::Double, at: at + 1 }),
                        },
                        Some((_, c)) => word.push(c),
                        None => return Err(SplitError::Unterminated { kind: QuoteKind::Double, at: at + 1 }),
                    }
                }
            }
            '\\' => match chars.next() {
                Some((_, c)) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The body of a `$'...'` word, after its opening quote, up to and
/// including its closing one.
fn ansi_c(
    chars: &mut std::iter::Peekable<impl Iterator<Item = (usize, char)>>,
    at: usize,
    word: &mut String,
) -> Result<(), SplitError> {
    let unterminated = SplitError::Unterminated { kind: QuoteKind::Single, at: at + 1 };
    loop {
        let Some((_, c)) = chars.next() else { return Err(unterminated) };
        match c {
            '\'' => return Ok(()),
            '\\' => {
                let Some((esc_at, e)) = chars.next() else { return Err(unterminated) };
                let simple = match e {
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'e' | 'E' => Some('\u{1b}'),
                    'f' => Some('\u{c}'),
                    'v' => Some('\u{b}'),
                    '\\' | '\'' | '"' | '?' => Some(e),
                    _ => None,
                };
                match (simple, e) {
                    (Some(c), _) => word.push(c),
                    (None, 'x' | 'u') => {
                        let most = if e == 'x' { 2 } else { 4 };
                        let mut code = 0u32;
                        let mut digits = 0;
                        while digits < most {
                            let Some(d) = chars.peek().and_then(|(_, d)| d.to_digit(16)) else { break };
                            chars.next();
                            code = code * 16 + d;
                            digits += 1;
                        }
                        let bad = |what: &str| SplitError::BadEscape { at: esc_at, what: what.into() };
                        if digits == 0 {
                            return Err(bad(&format!("\\{e} needs hex digits")));
                        }
                        word.push(
                            char::from_u32(code).ok_or_else(|| bad(&format!("U+{code:04X} is not a character")))?,
                        );
                    }
                    // Unknown escapes stay as written, as bash leaves them.
                    (None, other) => {
                        word.push('\\');
                        word.push(other);
                    }
                }
            }
            c => word.push(c),
        }
    }
}

/// Characters a word may hold and still be given bare.
fn is_plain(c: char) -> bool {
    c.is_alphanumeric() || "_-+=@%:,./^~".contains(c)
}

/// `word` as it is when that splits back to it, otherwise single-quoted
/// (`'old value'`, `'it'\''s'`, `''`), or `$'...'` with escapes when it
/// holds a control character (`$'two\nlines'`), so the result is one line.
pub fn quote(word: &str) -> String {
    if word.chars().any(char::is_control) {
        let mut quoted = String::from("$'");
        for c in word.chars() {
            match c {
                '\n' => quoted.push_str("\\n"),
                '\r' => quoted.push_str("\\r"),
                '\t' => quoted.push_str("\\t"),
                '\\' => quoted.push_str("\\\\"),
                '\'' => quoted.push_str("\\'"),
                c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => quoted.push(c),
            }
        }
        quoted.push('\'');
        return quoted;
    }
    // A leading `~` or `=` means something to some shells; quote it too.
    if !word.is_empty() && word.chars().all(is_plain) && !word.starts_with(['~', '=']) {
        return word.to_owned();
    }
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for c in word.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// The words as one line that `split` turns back into them.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words.iter().map(|w| quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn splits_like_a_shell() {
        let table: &[(&str, &[&str])] = &[
            ("paxos cas k 'old value' new", &["paxos", "cas", "k", "old value", "new"]),
            ("  a   b\tc ", &["a", "b", "c"]),
            (r#"put k "say \"hi\" \n""#, &["put", "k", r#"say "hi" \n"#]),
            (r"put k it\'s", &["put", "k", "it's"]),
            (r"put k 'it'\''s'", &["put", "k", "it's"]),
            ("put k ''", &["put", "k", ""]),
            (r#"put k """#, &["put", "k", ""]),
            ("put k a'b c'd", &["put", "k", "ab cd"]),
            ("put k '$HOME *'", &["put", "k", "$HOME *"]),
            ("put k $HOME", &["put", "k", "$HOME"]),
            (r"put k $'a\nb\t\x41\u00e9\'\\'", &["put", "k", "a\nb\tAé'\\"]),
            (r"put k $'\q'", &["put", "k", r"\q"]),
            ("put k $", &["put", "k", "$"]),
            (r"a\ b", &["a b"]),
            ("", &[]),
        ];
        for (line, expected) in table {
            assert_eq!(words(line), *expected, "{line:?}");
        }
    }

    #[test]
    fn unterminated_quotes_say_where() {
        assert_eq!(split("cas k 'old value new"), Err(SplitError::Unterminated { kind: QuoteKind::Single, at: 7 }));
        assert_eq!(split("put k \"v"), Err(SplitError::Unterminated { kind: QuoteKind::Double, at: 7 }));
        assert_eq!(split("put k \"v\\"), Err(SplitError::Unterminated { kind: QuoteKind::Double, at: 7 }));
        assert_eq!(split("put k v\\"), Err(SplitError::TrailingBackslash));
        assert_eq!(split("put k $'v"), Err(SplitError::Unterminated { kind: QuoteKind::Single, at: 7 }));
        assert!(matches!(split(r"put k $'\x'"), Err(SplitError::BadEscape { .. })));
        assert!(matches!(split(r"put k $'\ud800'"), Err(SplitError::BadEscape { .. })));
        let message = split("cas k 'old").unwrap_err().to_string();
        assert_eq!(message, "unterminated single quote: the single quote at character 7 is never closed");
    }

    #[test]
    fn quote_only_what_needs_it_and_round_trip() {
        assert_eq!(quote("value"), "value");
        assert_eq!(quote("10.0.0.1:7100"), "10.0.0.1:7100");
        assert_eq!(quote("old value"), "'old value'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a\"b"), "'a\"b'");
        assert_eq!(quote("$x"), "'$x'");
        assert_eq!(quote("~root"), "'~root'");
        assert_eq!(quote("héllo"), "héllo");
        assert_eq!(quote("new\nline"), r"$'new\nline'");
        assert_eq!(quote("it's\r\n"), r"$'it\'s\r\n'");
        assert_eq!(quote("\u{1b}[31m"), r"$'\u001b[31m'");
        let samples = [
            "",
            "a b",
            "it's",
            "'",
            "''",
            "\\",
            "\"",
            "a\\'b",
            " lead",
            "tab\there",
            "new\nline",
            "--json",
            "\u{7f}x",
            "\u{85}",
            "a\\\nb",
            "\r",
            "$'x'",
            "\u{1b}1f",
        ];
        for sample in samples {
            let quoted = quote(sample);
            assert!(!quoted.contains(['\n', '\r']), "{sample:?} quoted as {quoted:?} spans lines");
        }
        for sample in samples {
            assert_eq!(words(&quote(sample)), [sample], "{sample:?} quoted as {}", quote(sample));
        }
        assert_eq!(words(&join(&samples)), samples);
    }
}
