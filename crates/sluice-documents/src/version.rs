//! Change versions: any integer from 0 to 10^38 - 1 that grows with each
//! change of a document at its source.
//!
//! Sources give a version as a JSON integer or as a string of digits
//! (DynamoDB stream sequence numbers have 21 to 40 digits, more than a
//! 64-bit integer holds). Every place keeps it exactly:
//! * the merge state and the stores: a `u128` (PostgreSQL `numeric(38,0)`;
//!   SQLite an integer, or above 2^63 - 1 its digits as a blob, which
//!   SQLite never converts);
//! * snapshots: `decimal(38,0)`;
//! * documents going downstream: a JSON number up to 2^63 - 1 (what every
//!   JSON reader holds exactly), a string of digits above.

use serde_json::Value;

pub type Version = u128;

/// The highest version: 38 digits, what `decimal(38,0)` holds.
pub const MAX: Version = 10u128.pow(38) - 1;

/// A version written as digits (leading zeros allowed).
pub fn parse_digits(text: &str) -> Option<Version> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = text.trim_start_matches('0');
    if significant.len() > 38 {
        return None;
    }
    Some(significant.parse().unwrap_or(0))
}

/// A version as a change event gives it; the error says what was found.
pub fn from_json(value: &Value) -> Result<Version, String> {
    const EXPECTED: &str = "expected an integer from 0 to 10^38-1, as a number or a string of digits";
    match value {
        Value::Number(n) => n
            .as_u64()
            .map(Version::from)
            .ok_or_else(|| format!("{EXPECTED}, got {n}")),
        Value::String(s) => parse_digits(s).ok_or_else(|| format!("{EXPECTED}, got {s:?}")),
        other => Err(format!("{EXPECTED}, got {}", sluice_core::json_kind(other))),
    }
}

/// A version as documents carry it downstream.
pub fn to_json(version: Version) -> Value {
    match i64::try_from(version) {
        Ok(small) => Value::from(small),
        Err(_) => Value::String(version.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_read_exactly_from_numbers_and_digit_strings() {
        assert_eq!(from_json(&json!(7)), Ok(7));
        assert_eq!(from_json(&json!(u64::MAX)), Ok(u64::MAX as u128));
        let sequence = "000000000000000000001234567890123456789012";
        assert_eq!(from_json(&json!(sequence)), Ok(1_234_567_890_123_456_789_012));
        assert_eq!(from_json(&json!("99999999999999999999999999999999999999")), Ok(MAX));
        for refused in [json!(-1), json!(1.5), json!("12a"), json!(""), json!(true)] {
            assert!(
                from_json(&refused)
                    .unwrap_err()
                    .starts_with("expected an integer from 0 to 10^38-1")
            );
        }
        assert!(from_json(&json!("100000000000000000000000000000000000000")).is_err());
    }

    #[test]
    fn downstream_a_version_is_a_number_while_every_reader_holds_it() {
        assert_eq!(to_json(i64::MAX as u128), json!(i64::MAX));
        assert_eq!(to_json(i64::MAX as u128 + 1), json!("9223372036854775808"));
        assert_eq!(from_json(&to_json(MAX)), Ok(MAX));
    }
}
