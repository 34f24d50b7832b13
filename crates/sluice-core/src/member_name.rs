//! Member names compared inline: the hot loops that match each member of
//! an event to a schema property or a column compare short names, where
//! libc's `memcmp` call costs more than the compare.

/// `a == b`, compared inline for names of up to 16 bytes (two overlapping
/// loads of each); `==` calls libc's `memcmp`, which was most of the cost
/// of a member lookup whose guess hit.
#[inline]
pub fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

/// The `N` bytes of `bytes` from `at` (the caller keeps them in range).
#[inline]
fn word<const N: usize>(bytes: &[u8], at: usize) -> Option<&[u8; N]> {
    bytes.get(at..)?.first_chunk::<N>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inline name compare agrees with `==` for every length up to past
    /// its word sizes: equal names, names differing at any one byte, and
    /// names of different lengths.
    #[test]
    fn names_compare_as_strings_do() {
        for n in 0..=20 {
            let name: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(same_name(&name, &name.clone()), "{name}");
            for at in 0..n {
                let mut other = name.clone().into_bytes();
                other[at] = b'Z';
                let other = String::from_utf8(other).unwrap();
                assert!(!same_name(&name, &other), "{name} {other}");
            }
            let longer = format!("{name}a");
            assert!(!same_name(&name, &longer) && !same_name(&longer, &name), "{name}");
        }
        assert!(same_name("é", "é") && !same_name("é", "è"));
    }
}
