//! The shipped list of common (breached) passwords; see `data/common-passwords.LICENSE.md`.

use std::collections::HashSet;
use std::sync::LazyLock;

static LIST: &str = include_str!("../../data/common-passwords.txt");

static SET: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    LIST.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
});

/// Number of entries in the shipped list.
#[cfg(test)]
pub(crate) fn len() -> usize {
    SET.len()
}

/// Whether `lowered` (already lower-cased) is on the list.
pub(crate) fn contains(lowered: &str) -> bool {
    SET.contains(lowered)
}
