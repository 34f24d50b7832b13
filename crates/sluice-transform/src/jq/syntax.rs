//! jq syntax jaq's parser lacks, rewritten into what it has before the
//! program compiles: number literals that start with a point (`.5`),
//! `$__loc__`, and destructuring alternatives (`E as P1 ?// P2 | BODY`);
//! module directives (`module`, `import`, `include`) are refused by name.
//!
//! `$__loc__` becomes `{file: "<top-level>", line: N}` (as a key in an
//! object, `__loc__: {...}`).
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
//! in jq. Only the `as ... |` form is rewritten (not `reduce`/`foreach`).
//! The other rewrites keep every line where it was, and a program without
//! `?//` keeps its columns too, so compile errors name its own places.

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
    /// `reduce`, `foreach`.
    Fold,
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

/// The program rewritten, or an error naming what is not supported. A
/// program whose brackets or strings do not close is left as it is, for
/// jaq to name the problem and its place.
pub fn rewrite(program: &str) -> Result<String, String> {
    let Ok(tokens) = tokenize(program) else {
        return Ok(program.to_string());
    };
    if let Some(first) = tokens.first()
        && matches!(&program[first.start..first.end], "module" | "import" | "include")
    {
        return Err(format!(
            "jq modules are not supported (`{}`): write the definitions into the program",
            &program[first.start..first.end]
        ));
    }
    let pointed = point_numbers(program, &tokens);
    let located = locations(&pointed, &tokenize(&pointed)?);
    let folded = fold_sources(&located, &tokenize(&located)?);
    let mut text = variable_keys(&folded, &tokenize(&folded)?);
    for counter in 1.. {
        let tokens = tokenize(&text)?;
        let Some(alt) = tokens.iter().position(|t| t.kind == Kind::Alt) else {
            return Ok(text);
        };
        text = rewrite_one(&text, &tokens, alt, counter)?;
    }
    unreachable!("the counter is unbounded")
}

/// Number literals that start with a point (`.5`) with a zero before it.
fn point_numbers(text: &str, tokens: &[Token]) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for token in tokens {
        let at = token.start;
        let starts_number = bytes[at] == b'.'
            && bytes.get(at + 1).is_some_and(u8::is_ascii_digit)
            && !(at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_'));
        if starts_number {
            out.push_str(&text[copied..at]);
            out.push('0');
            copied = at;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// `$__loc__` as the object jq gives for it.
fn locations(text: &str, tokens: &[Token]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut open: Vec<u8> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token.kind {
            Kind::Open => open.push(text.as_bytes()[token.start]),
            Kind::Close => {
                open.pop();
            }
            Kind::Variable if &text[token.start..token.end] == "$__loc__" => {
                let line = text[..token.start].matches('\n').count() + 1;
                let location = format!("{{file: \"<top-level>\", line: {line}}}");
                let in_object = open.last() == Some(&b'{');
                let after = |t: Option<&Token>| t.map(|t| &text[t.start..t.end]);
                let shorthand = in_object
                    && matches!(after(i.checked_sub(1).and_then(|p| tokens.get(p))), Some("{" | ","))
                    && matches!(after(tokens.get(i + 1)), Some("}" | ","));
                out.push_str(&text[copied..token.start]);
                if shorthand {
                    out.push_str(&format!("__loc__: {location}"));
                } else {
                    out.push_str(&format!("({location})"));
                }
                copied = token.end;
            }
            _ => {}
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The source of each `reduce`/`foreach` in parentheses: jq takes any
/// postfix term there (`reduce .[] / .[] as $x`), jaq only a simple one.
fn fold_sources(text: &str, tokens: &[Token]) -> String {
    let mut inserts = Vec::new();
    for (i, token) in tokens.iter().enumerate().filter(|(_, t)| t.kind == Kind::Fold) {
        let mut depth = 0i32;
        for next in &tokens[i + 1..] {
            match next.kind {
                Kind::Open | Kind::If => depth += 1,
                Kind::Close | Kind::End => depth -= 1,
                Kind::As if depth == 0 => {
                    inserts.push((token.end, " ("));
                    inserts.push((next.start, ") "));
                    break;
                }
                _ => {}
            }
            if depth < 0 {
                break;
            }
        }
    }
    insert(text, inserts)
}

/// `$name: pattern` in an object pattern (bind the value and destructure
/// it too) as `name: $name, name: pattern`, which jaq reads.
fn variable_keys(text: &str, tokens: &[Token]) -> String {
    let mut inserts = Vec::new();
    let mut in_pattern = false;
    let mut open = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token.kind {
            Kind::As | Kind::Alt => in_pattern = true,
            Kind::Pipe => in_pattern = false,
            Kind::Open => open.push(text.as_bytes()[token.start]),
            Kind::Close => {
                open.pop();
            }
            Kind::Variable
                if in_pattern
                    && open.last() == Some(&b'{')
                    && tokens.get(i + 1).is_some_and(|t| &text[t.start..t.end] == ":") =>
            {
                let name = &text[token.start + 1..token.end];
                inserts.push((token.start, format!("{name}: ${name}, {name}")));
                inserts.push((token.end, String::new()));
            }
            _ => {}
        }
    }
    // Each variable key is replaced: drop the `$name` between the pair.
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for pair in inserts.chunks(2) {
        let [(at, replacement), (after, _)] = pair else {
            continue;
        };
        out.push_str(&text[copied..*at]);
        out.push_str(replacement);
        copied = *after;
    }
    out.push_str(&text[copied..]);
    out
}

/// `text` with each `(at, piece)` inserted, `at` ascending.
fn insert(text: &str, inserts: Vec<(usize, &str)>) -> String {
    let mut out = String::with_capacity(text.len() + 2 * inserts.len());
    let mut copied = 0;
    for (at, piece) in inserts {
        out.push_str(&text[copied..at]);
        out.push_str(piece);
        copied = at;
    }
    out.push_str(&text[copied..]);
    out
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

/// The tokens of `text` the rewrite looks at: code, also inside string
/// interpolations (`"a \(.b)"` gives an open, `.b`'s tokens and a close);
/// strings' text and comments are skipped.
fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    // The bracket depth at which each open interpolation started.
    let mut interpolations: Vec<usize> = Vec::new();
    let mut depth = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if in_string {
            match bytes[i] {
                b'"' => in_string = false,
                b'\\' if bytes.get(i + 1) == Some(&b'(') => {
                    tokens.push(Token {
                        kind: Kind::Open,
                        start,
                        end: i + 2,
                    });
                    interpolations.push(depth);
                    depth += 1;
                    in_string = false;
                    i += 1;
                }
                b'\\' => i += 1,
                _ => {}
            }
            i += 1;
            continue;
        }
        let kind = match bytes[i] {
            b'"' => {
                in_string = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                i += 1;
                Kind::Open
            }
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1).ok_or("a bracket is closed that was not opened")?;
                if bytes[i] == b')' && interpolations.last() == Some(&depth) {
                    interpolations.pop();
                    in_string = true;
                }
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
                // A keyword as an object key (`{if: 1, as}`) is a name.
                let after = bytes[i..].iter().find(|b| !b.is_ascii_whitespace());
                let key = tokens
                    .last()
                    .is_some_and(|t: &Token| matches!(&text[t.start..t.end], "{" | ","))
                    && matches!(after, Some(b':' | b',' | b'}'));
                match &text[start..i] {
                    word if key && !word.starts_with('$') => Kind::Other,
                    "if" => Kind::If,
                    "end" => Kind::End,
                    "then" | "elif" | "else" => Kind::Branch,
                    "as" => Kind::As,
                    "reduce" | "foreach" => Kind::Fold,
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
    if in_string {
        return Err("a string is not closed".into());
    }
    Ok(tokens)
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
    fn point_numbers_locations_and_modules() {
        assert_eq!(rewrite("select(. > .5) | .a.b").unwrap(), "select(. > 0.5) | .a.b");
        assert_eq!(
            rewrite("{a,\n $__loc__}, $__loc__.line").unwrap(),
            "{a,\n __loc__: {file: \"<top-level>\", line: 2}}, ({file: \"<top-level>\", line: 2}).line"
        );
        assert!(rewrite("import \"a\" as a; .").unwrap_err().contains("`import`"));
        assert_eq!(
            rewrite("\"at \\($__loc__.line)\"").unwrap(),
            "\"at \\(({file: \"<top-level>\", line: 1}).line)\""
        );
        assert_eq!(
            rewrite("[foreach .[] / .[] as $i (0; . + $i)]").unwrap(),
            "[foreach ( .[] / .[] ) as $i (0; . + $i)]"
        );
        assert_eq!(
            rewrite(". as {$a, $b: [$c]} | $b, {$d: 1}").unwrap(),
            ". as {$a, b: $b, b: [$c]} | $b, {$d: 1}"
        );
        let keys = "1 as $x | {as, $x: 2, if: 3}";
        assert_eq!(rewrite(keys).unwrap(), keys, "keywords as keys are names");
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
