//! The 10,000 most common passwords of eight characters or more
//! (`common-passwords.txt`: lowercased, from the top of SecLists'
//! "10 million password list", MIT licence), which no account may use.
use std::collections::HashSet;
use std::sync::LazyLock;

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

/// Whether `password` is one of them, whatever its case.
pub fn is_common(password: &str) -> bool {
    COMMON.contains(password.to_lowercase().as_str())
}
