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
//! There are no variables, globs or comments: `$HOME` and `*` are text.
//! `quote` is the inverse: a word that needs it comes back single-quoted.

use std::fmt;

/// A line that cannot be split into words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("unterminated {kind} quote: the {kind} quote at character {at} is never closed")]
    Unterminated { kind: QuoteKind, at: usize },
    #[error("the line ends with a backslash that escapes nothing")]
    TrailingBackslash,
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
    let mut chars = line.chars().enumerate();
    while let Some((at, c)) = chars.next() {
        match c {
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

/// Characters a word may hold and still be given bare.
fn is_plain(c: char) -> bool {
    c.is_alphanumeric() || "_-+=@%:,./^~".contains(c)
}

/// `word` as it is when that splits back to it, otherwise single-quoted
/// (`'old value'`, `'it'\''s'`, `''`). Control characters are not
/// escaped here: text output runs values through `escape_controls` first.
pub fn quote(word: &str) -> String {
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
        let samples = ["", "a b", "it's", "'", "''", "\\", "\"", "a\\'b", " lead", "tab\there", "new\nline", "--json"];
        for sample in samples {
            assert_eq!(words(&quote(sample)), [sample], "{sample:?} quoted as {}", quote(sample));
        }
        assert_eq!(words(&join(&samples)), samples);
    }
}
