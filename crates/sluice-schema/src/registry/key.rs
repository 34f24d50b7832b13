//! Schema keys: `iglu:vendor/name/format/MODEL-REVISION-ADDITION`, Iglu's
//! naming with SchemaVer. MODEL changes when data of the old version cannot
//! be read by the new one; REVISION and ADDITION mark compatible changes.

use std::{cmp::Ordering, fmt, str::FromStr};

use serde::Serialize;

/// `MODEL-REVISION-ADDITION`, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SchemaVer {
    pub model: u32,
    pub revision: u32,
    pub addition: u32,
}

impl Ord for SchemaVer {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.model, self.revision, self.addition).cmp(&(other.model, other.revision, other.addition))
    }
}

impl PartialOrd for SchemaVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SchemaVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.model, self.revision, self.addition)
    }
}

impl FromStr for SchemaVer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a SchemaVer (MODEL-REVISION-ADDITION, e.g. 1-0-2)");
        let parts: Vec<&str> = s.split('-').collect();
        let [model, revision, addition] = parts.as_slice() else {
            return Err(bad());
        };
        let number = |p: &str| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
                return Err(bad());
            }
            p.parse::<u32>().map_err(|_| bad())
        };
        let version = SchemaVer {
            model: number(model)?,
            revision: number(revision)?,
            addition: number(addition)?,
        };
        if version.model == 0 {
            return Err(format!("{s:?}: MODEL starts at 1"));
        }
        Ok(version)
    }
}

/// A schema's full name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SchemaKey {
    pub vendor: String,
    pub name: String,
    pub format: String,
    pub version: SchemaVer,
}

impl SchemaKey {
    /// The same schema family (vendor, name, format).
    pub fn same_family(&self, other: &SchemaKey) -> bool {
        (&self.vendor, &self.name, &self.format) == (&other.vendor, &other.name, &other.format)
    }

    /// `vendor/name/format`, the family's path in a registry.
    pub fn family_path(&self) -> String {
        format!("{}/{}/{}", self.vendor, self.name, self.format)
    }
}

impl fmt::Display for SchemaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "iglu:{}/{}", self.family_path(), self.version)
    }
}

impl FromStr for SchemaKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("iglu:")
            .ok_or_else(|| format!("{s:?} is not a schema key (iglu:vendor/name/format/1-0-0)"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [vendor, name, format, version] = parts.as_slice() else {
            return Err(format!("{s:?} is not a schema key (iglu:vendor/name/format/1-0-0)"));
        };
        for (what, part) in [("vendor", vendor), ("name", name), ("format", format)] {
            let ok = !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                && !part.starts_with('.');
            if !ok {
                return Err(format!(
                    "{s:?}: {what} {part:?} may only use letters, digits, '.', '_' and '-'"
                ));
            }
        }
        Ok(SchemaKey {
            vendor: vendor.to_string(),
            name: name.to_string(),
            format: format.to_string(),
            version: version.parse().map_err(|e| format!("{s:?}: {e}"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_print_and_order_by_schemaver() {
        let key: SchemaKey = "iglu:com.acme/page_view/jsonschema/1-0-10".parse().unwrap();
        assert_eq!(key.to_string(), "iglu:com.acme/page_view/jsonschema/1-0-10");
        assert!(key.version > "1-0-9".parse().unwrap(), "numeric, not text, order");
        assert!("2-0-0".parse::<SchemaVer>().unwrap() > "1-9-9".parse().unwrap());
        for bad in [
            "com.acme/x/jsonschema/1-0-0",
            "iglu:com.acme/x/1-0-0",
            "iglu:a/b/c/1-0",
            "iglu:a/b/c/01-0-0",
            "iglu:a/b/c/0-1-0",
            "iglu:a/../c/1-0-0",
        ] {
            assert!(bad.parse::<SchemaKey>().is_err(), "{bad}");
        }
    }
}
