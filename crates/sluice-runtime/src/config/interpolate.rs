//! Environment variables in pipeline files: `${NAME}` and
//! `${NAME:-default}` are replaced before the TOML is parsed, so one file
//! serves every replica (ports, data directories, endpoints differ by
//! environment), as in Vector and Redpanda Connect. `$$` is a literal `$`.

/// `text` with every reference replaced by `lookup`'s value; an unset
/// variable without a default is an error naming it and its line.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let line = text[..text.len() - rest.len() + at].matches('\n').count() + 1;
        let end = body
            .find('}')
            .ok_or_else(|| format!("line {line}: \"${{\" is not closed; write $$ for a literal $"))?;
        let (name, default) = match body[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&body[..end], None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "line {line}: \"${{{}}}\" is not a variable reference; allowed: ${{NAME}} or ${{NAME:-default}} (letters, digits, _)",
                &body[..end]
            ));
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "line {line}: environment variable {name} is not set; set it or give a default: ${{{name}:-...}}"
                ));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8081".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_references_and_defaults() {
        let text = "address = \"127.0.0.1:${PORT}\"\ndata_dir = \"${DIR:-/var/lib/sluice}\"\nx = \"${EMPTY:-unused}\"";
        assert_eq!(
            interpolate(text, env).unwrap(),
            "address = \"127.0.0.1:8081\"\ndata_dir = \"/var/lib/sluice\"\nx = \"\""
        );
    }

    #[test]
    fn keeps_dollars_that_are_not_references() {
        assert_eq!(
            interpolate("a = \"$x $$ $${PORT}\"", env).unwrap(),
            "a = \"$x $ ${PORT}\""
        );
    }

    #[test]
    fn names_an_unset_variable_and_its_line() {
        let err = interpolate("a = 1\nb = \"${NOPE}\"", env).unwrap_err();
        assert_eq!(
            err,
            "line 2: environment variable NOPE is not set; set it or give a default: ${NOPE:-...}"
        );
        let err = interpolate("a = \"${bad name}\"", env).unwrap_err();
        assert!(
            err.starts_with("line 1: \"${bad name}\" is not a variable reference"),
            "{err}"
        );
        assert!(
            interpolate("a = \"${PORT\"", env)
                .unwrap_err()
                .contains("is not closed")
        );
    }
}
