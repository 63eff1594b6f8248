//! Values interpolated from the environment are never printed: every text the tool shows or
//! stores about its own work (errors, warnings, logs, the summary, `--report`, dead-letter
//! reasons) passes through [`redact`], which writes `${NAME}` where the value of `NAME` was.
//!
//! The pipeline loader [`remember`]s each value it substitutes. Values shorter than
//! [`MIN_LEN`] characters, numbers and booleans are left alone: replacing `1000` in
//! "1000 requests" would garble messages and such values are not secrets. So are option
//! words (letters only, at most [`MAX_WORD_LEN`]: `rehost`, `adaptive`) of variables whose
//! name does not say secret (`KEY`, `TOKEN`, `SECRET`, `PASS`, `AUTH`, `CREDENTIAL`):
//! replacing `rehost` in "rehosted" would garble the report.

use std::borrow::Cow;
use std::sync::RwLock;

/// Values shorter than this are not redacted.
pub const MIN_LEN: usize = 4;

/// Plain words up to this length are not redacted unless the variable's name says secret.
pub const MAX_WORD_LEN: usize = 12;

/// Whether a variable's name says it holds a secret.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASS",
        "PWD",
        "AUTH",
        "CREDENTIAL",
        "PRIVATE",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// (value, `${NAME}`), longest value first so that a value containing another is replaced whole.
static SECRETS: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// Remembers that `value` came from the environment variable `name`.
pub fn remember(name: &str, value: &str) {
    if value.chars().count() < MIN_LEN
        || value.parse::<f64>().is_ok()
        || matches!(value, "true" | "false" | "null")
    {
        return;
    }
    let word = value.len() <= MAX_WORD_LEN && value.chars().all(|c| c.is_ascii_alphabetic());
    if word && !secret_name(name) {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if secrets.iter().any(|(v, _)| v == value) {
        return;
    }
    secrets.push((value.to_string(), format!("${{{name}}}")));
    secrets.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
}

/// `text` with every remembered value replaced by its `${NAME}` reference.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for (value, reference) in secrets.iter() {
        if out.contains(value.as_str()) {
            out = Cow::Owned(out.replace(value.as_str(), reference));
        }
    }
    out
}

/// `eprintln!` through [`redact`]; modules that print use this one.
#[macro_export]
macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($arg:tt)*) => { ::std::eprintln!("{}", $crate::redact::redact(&::std::format!($($arg)*))) };
}

/// `eprint!` through [`redact`].
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { ::std::eprint!("{}", $crate::redact::redact(&::std::format!($($arg)*))) };
}

/// `println!` through [`redact`].
#[macro_export]
macro_rules! println {
    () => { ::std::println!() };
    ($($arg:tt)*) => { ::std::println!("{}", $crate::redact::redact(&::std::format!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_values_become_references_and_short_ones_stay() {
        remember("REDACT_TEST_KEY", "k3y-abcdef");
        remember("REDACT_TEST_LONG", "k3y-abcdef-and-more");
        remember("REDACT_TEST_RPM", "1000");
        remember("REDACT_TEST_SHORT", "abc");
        assert_eq!(
            redact("key k3y-abcdef, long k3y-abcdef-and-more, 1000 requests, abc"),
            "key ${REDACT_TEST_KEY}, long ${REDACT_TEST_LONG}, 1000 requests, abc"
        );
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn option_words_stay_unless_the_name_says_secret() {
        remember("REDACT_TEST_MODE", "rehostword");
        remember("REDACT_TEST_PASSWORD", "hunterword");
        remember("REDACT_TEST_DIR", "/data/dumpword");
        assert_eq!(
            redact("rehostworded hunterword /data/dumpword/x"),
            "rehostworded ${REDACT_TEST_PASSWORD} ${REDACT_TEST_DIR}/x"
        );
    }
}
