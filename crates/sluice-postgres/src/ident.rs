//! Identifiers: the names of schemas, tables and columns, and how they are
//! quoted. Names from the pipeline file must be plain (`[A-Za-z_][A-Za-z0-9_]*`);
//! names made from JSON field names keep the field's spelling and are always
//! quoted, so no field name can become SQL text. PostgreSQL cuts names at 63
//! bytes; longer ones are shortened here, deterministically, with a hash of
//! the full name so that two long names never meet.

use std::hash::Hasher;

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// What joins the field names of a path into one column or table name.
pub const PATH_SEPARATOR: &str = "__";

/// Checks a name given in the pipeline file (schema, table).
pub fn check_config_identifier(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain || name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "{name:?} is not allowed; use letters, digits and '_', starting with a letter or '_', at most {MAX_IDENTIFIER_BYTES} bytes"
        ));
    }
    Ok(())
}

/// `name` as a quoted identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.name`, both quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote(schema), quote(name))
}

/// The name for a path of field names (`device__screen__w`), or why there is none.
pub fn path_name(prefix: Option<&str>, path: &[String]) -> Result<String, String> {
    let mut name = String::new();
    if let Some(p) = prefix {
        name.push_str(p);
    }
    for segment in path {
        if segment.is_empty() || segment.contains('\0') {
            return Err(format!("the field name {segment:?} cannot be a column name"));
        }
        if !name.is_empty() {
            name.push_str(PATH_SEPARATOR);
        }
        name.push_str(segment);
    }
    Ok(shorten(name))
}

/// `name` if it fits; otherwise its first bytes, `_` and 8 hex digits of its hash.
fn shorten(name: String) -> String {
    if name.len() <= MAX_IDENTIFIER_BYTES {
        return name;
    }
    let mut hasher = twox_hash::XxHash64::with_seed(0);
    hasher.write(name.as_bytes());
    let hash = format!("{:08x}", hasher.finish() as u32);
    let mut cut = MAX_IDENTIFIER_BYTES - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn config_names_must_be_plain() {
        assert!(check_config_identifier("events_2026").is_ok());
        for bad in ["", "1x", "a b", "a\"b", "ev;drop", &"x".repeat(64)] {
            assert!(check_config_identifier(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote("a\"; DROP TABLE x; --"), "\"a\"\"; DROP TABLE x; --\"");
        assert_eq!(qualified("public", "events"), "\"public\".\"events\"");
    }

    #[test]
    fn paths_join_and_long_names_shorten_distinctly() {
        assert_eq!(
            path_name(None, &path(&["device", "screen", "w"])).unwrap(),
            "device__screen__w"
        );
        assert_eq!(
            path_name(Some("events"), &path(&["props", "items"])).unwrap(),
            "events__props__items"
        );
        let a = path_name(None, &path(&[&"é".repeat(40), "a"])).unwrap();
        let b = path_name(None, &path(&[&"é".repeat(40), "b"])).unwrap();
        assert!(a.len() <= MAX_IDENTIFIER_BYTES && b.len() <= MAX_IDENTIFIER_BYTES);
        assert_ne!(a, b);
        assert_eq!(a, path_name(None, &path(&[&"é".repeat(40), "a"])).unwrap());
        assert!(path_name(None, &path(&["a", ""])).is_err());
        assert!(path_name(None, &path(&["a\0"])).is_err());
    }
}
