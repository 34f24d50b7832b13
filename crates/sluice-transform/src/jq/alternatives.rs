//! jq's destructuring alternatives (`E as P1 ?// P2 | BODY`), which jaq's
//! parser lacks, rewritten into what it has before the program compiles.
//!
//! jq binds every variable of every pattern (null where the pattern in use
//! has none) and tries the patterns in order: when destructuring or the
//! body fails, the next pattern runs on the same value; the last one's
//! error stands. The rewrite:
//!
//! ```text
//! E as $__alt1 | (try ($__alt1 as P1 | null as $b | BODY)
//!                 catch ($__alt1 as P2 | null as $a | BODY))
//! ```
//!
//! Outputs a failing alternative emitted before its error stay emitted, as
//! in jq. Only the `as ... |` form is rewritten (not `reduce`/`foreach`);
//! a program without `?//` is left exactly as written, so compile errors
//! name its own lines and columns.

/// One token of a jq program, as far as the rewrite needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Close,
    /// `if` opens what `end` closes.
    If,
    End,
    /// `then`, `elif`, `else`: the end of a body inside an `if`.
    Branch,
    As,
    Alt,
    Pipe,
    Semicolon,
    Variable,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// The program with every destructuring alternative rewritten, or an
/// error naming what could not be read.
pub fn rewrite(program: &str) -> Result<String, String> {
    let mut text = program.to_string();
    for counter in 1.. {
        let tokens = tokenize(&text)?;
        let Some(alt) = tokens.iter().position(|t| t.kind == Kind::Alt) else {
            return Ok(text);
        };
        text = rewrite_one(&text, &tokens, alt, counter)?;
    }
    unreachable!("the counter is unbounded")
}

/// Rewrites the alternatives around the `?//` at `tokens[alt]`.
fn rewrite_one(text: &str, tokens: &[Token], alt: usize, counter: usize) -> Result<String, String> {
    let unsupported = || {
        "`?//` is supported after `as` and before `|` (`E as P1 ?// P2 | BODY`), not in `reduce` or `foreach`"
            .to_string()
    };
    // The `as` this alternative belongs to: the nearest before it at depth 0.
    let mut depth = 0i32;
    let mut as_at = None;
    for i in (0..alt).rev() {
        match tokens[i].kind {
            Kind::Close | Kind::End => depth += 1,
            Kind::Open | Kind::If if depth > 0 => depth -= 1,
            Kind::Open | Kind::If => break,
            Kind::As if depth == 0 => {
                as_at = Some(i);
                break;
            }
            Kind::Pipe | Kind::Semicolon if depth == 0 => break,
            _ => {}
        }
    }
    let as_at = as_at.ok_or_else(unsupported)?;
    // Patterns: between `as` and each `?//`, and the last up to `|`.
    let mut patterns = Vec::new();
    let mut start = tokens[as_at].end;
    let mut depth = 0i32;
    let mut pipe = None;
    for (i, token) in tokens.iter().enumerate().skip(as_at + 1) {
        match token.kind {
            Kind::Open | Kind::If => depth += 1,
            Kind::Close | Kind::End if depth == 0 => break,
            Kind::Close | Kind::End => depth -= 1,
            Kind::Alt if depth == 0 => {
                patterns.push((start, token.start, i));
                start = token.end;
            }
            Kind::Pipe if depth == 0 => {
                patterns.push((start, token.start, i));
                pipe = Some(i);
                break;
            }
            Kind::Semicolon if depth == 0 => break,
            _ => {}
        }
    }
    let pipe = pipe.ok_or_else(unsupported)?;
    // The body: up to what closes the expression the `as` is in.
    let mut depth = 0i32;
    let mut body_end = text.len();
    for token in &tokens[pipe + 1..] {
        match token.kind {
            Kind::Open | Kind::If => depth += 1,
            Kind::Close | Kind::End | Kind::Branch | Kind::Semicolon if depth == 0 => {
                body_end = token.start;
                break;
            }
            Kind::Close | Kind::End => depth -= 1,
            _ => {}
        }
    }
    let body = &text[tokens[pipe].end..body_end];
    let variables_of = |from_token: usize, to_token: usize| -> Vec<&str> {
        tokens[from_token..to_token]
            .iter()
            .filter(|t| t.kind == Kind::Variable)
            .map(|t| &text[t.start..t.end])
            .filter(|v| *v != "$__loc__")
            .collect()
    };
    let mut token_bounds = Vec::new();
    let mut from = as_at + 1;
    for (_, _, until) in &patterns {
        token_bounds.push((from, *until));
        from = until + 1;
    }
    let mut all: Vec<&str> = Vec::new();
    for (from, to) in &token_bounds {
        for v in variables_of(*from, *to) {
            if !all.contains(&v) {
                all.push(v);
            }
        }
    }
    let value = format!("$__alt{counter}");
    let branch = |index: usize| {
        let (pattern_start, pattern_end, _) = patterns[index];
        let (from, to) = token_bounds[index];
        let own = variables_of(from, to);
        let nulls: String = all
            .iter()
            .filter(|v| !own.contains(v))
            .map(|v| format!("null as {v} | "))
            .collect();
        format!(
            "({value} as {} | {nulls}{body})",
            text[pattern_start..pattern_end].trim()
        )
    };
    let mut chain = branch(patterns.len() - 1);
    for index in (0..patterns.len() - 1).rev() {
        chain = format!("(try {} catch {chain})", branch(index));
    }
    Ok(format!(
        "{}as {value} | {chain}{}",
        &text[..tokens[as_at].start],
        &text[body_end..]
    ))
}

/// The tokens of `text` the rewrite looks at; strings (with their
/// interpolations) and comments are skipped whole.
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let kind = match bytes[i] {
            b'"' => {
                i = skip_string(bytes, i)?;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                i += 1;
                Kind::Open
            }
            b')' | b']' | b'}' => {
                i += 1;
                Kind::Close
            }
            b';' => {
                i += 1;
                Kind::Semicolon
            }
            b'?' if bytes[i..].starts_with(b"?//") => {
                i += 3;
                Kind::Alt
            }
            b'|' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Kind::Other
            }
            b'|' => {
                i += 1;
                Kind::Pipe
            }
            b'$' | b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':') {
                    // `a::b` is one name; a single `:` ends it.
                    if bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') {
                        break;
                    }
                    i += if bytes[i] == b':' { 2 } else { 1 };
                }
                match &text[start..i] {
                    "if" => Kind::If,
                    "end" => Kind::End,
                    "then" | "elif" | "else" => Kind::Branch,
                    "as" => Kind::As,
                    word if word.starts_with('$') => Kind::Variable,
                    _ => Kind::Other,
                }
            }
            _ => {
                i += 1;
                Kind::Other
            }
        };
        tokens.push(Token { kind, start, end: i });
    }
    Ok(tokens)
}

/// The index after the string literal that starts at `open` (a `"`),
/// interpolations (`\(...)`, which may hold strings) included.
fn skip_string(bytes: &[u8], open: usize) -> Result<usize, String> {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok(i + 1),
            b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                let mut depth = 1;
                i += 2;
                while depth > 0 {
                    match bytes.get(i) {
                        None => return Err("a string interpolation is not closed".into()),
                        Some(b'"') => {
                            i = skip_string(bytes, i)?;
                            continue;
                        }
                        Some(b'(') => depth += 1,
                        Some(b')') => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Err("a string is not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_without_alternatives_stay_as_written() {
        let program = r#"if .a then "x ?// \(.b | "y ?//")" else .c end # ?// in a comment"#;
        assert_eq!(rewrite(program).unwrap(), program);
    }

    #[test]
    fn alternatives_become_tries_with_every_variable_bound() {
        assert_eq!(
            rewrite(". as [$a] ?// $b | [$a, $b]").unwrap(),
            ". as $__alt1 | (try ($__alt1 as [$a] | null as $b |  [$a, $b]) catch ($__alt1 as $b | null as $a |  [$a, $b]))"
        );
        let nested = rewrite("[.[] | (. as {a: $x} ?// $x | $x)], 1").unwrap();
        assert!(nested.ends_with("$x)))], 1"), "{nested}");
        assert!(rewrite("reduce .[] as [$a] ?// $a (0; . + $a)").is_err());
    }
}
