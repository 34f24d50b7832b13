use bytes::Bytes;
use sluice_core::{BatchInfo, Event, Transform};

use super::*;

fn run(program: &str, input: &str) -> Result<Vec<String>, (String, String)> {
    let program = Program::compile(program).unwrap();
    program.run(input.as_bytes(), &JqLimits::default()).map(|outs| {
        outs.into_iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    })
}

/// jaq recurses over a value's depth to print, compare and drop it: on
/// a worker thread's stack this nesting aborts the process.
#[tokio::test]
async fn deeply_nested_values_do_not_take_the_engine_down() {
    let program = "reduce range(30000) as $i (null; {inner: ., i: $i}) | {text: (tojson | length), same: (. == .)}";
    let transform = JqTransform::new(program, JqLimits::default()).unwrap();
    let event = Event::from_line(0, Bytes::from_static(b"{}"));
    let output = transform.process(BatchInfo::first("deep"), vec![event]).await.unwrap();
    assert!(output.rejected.is_empty(), "{:?}", output.rejected);
    let out: serde_json::Value = serde_json::from_slice(&output.events[0].payload).unwrap();
    assert_eq!(out["same"], true);
    assert!(
        out["text"].as_u64().unwrap() > 30_000 * 10,
        "every level printed: {}",
        out["text"]
    );
}

/// jq bounds containment checks and merges at 10 000 levels.
#[tokio::test]
async fn recursion_past_jq_bounds_is_a_jq_error() {
    for (program, detail) in [
        (
            "reduce range(10001) as $_ ([]; [.]) as $x | $x | contains($x)",
            "Containment check too deep",
        ),
        (
            "reduce range(10001) as $_ ({}; {a: .}) as $x | $x * $x",
            "Object merge too deep",
        ),
    ] {
        let transform = JqTransform::new(&format!("{{out: ({program})}}"), JqLimits::default()).unwrap();
        let event = Event::from_line(0, Bytes::from_static(b"{}"));
        let output = transform.process(BatchInfo::first("deep"), vec![event]).await.unwrap();
        let rejected = &output.rejected[0];
        assert_eq!(
            (rejected.reason.as_str(), rejected.detail.as_str()),
            ("jq_error", detail)
        );
    }
}

/// Parsing and running recurse once per `elif`: a long chain compiles
/// and runs on the jq threads' stack instead of overflowing the caller's.
#[tokio::test]
async fn a_long_elif_chain_compiles_and_runs() {
    let branches: String = (1..5000).map(|i| format!(" elif .n == {i} then {{k: {i}}}")).collect();
    let program = format!("if .n == 0 then {{k: 0}}{branches} else {{k: -1}} end");
    let transform = JqTransform::new(&program, JqLimits::default()).unwrap();
    let event = Event::from_line(0, Bytes::from_static(br#"{"n": 4321}"#));
    let output = transform.process(BatchInfo::first("elif"), vec![event]).await.unwrap();
    assert_eq!(output.events[0].payload, Bytes::from_static(br#"{"k":4321}"#));
}

#[test]
fn the_definitions_jaq_lacks_answer_as_jq_does() {
    let one = |program: &str, input: &str| run(&format!("{{out: ({program})}}"), input).unwrap().join("");
    assert_eq!(
        one("[1, \"a\\\"b\", null, true] | @csv", "{}"),
        r#"{"out":"1,\"a\"\"b\",,true"}"#
    );
    assert_eq!(one("[\"a\\tb\", 2, null] | @tsv", "{}"), r#"{"out":"a\\tb\t2\t"}"#);
    assert_eq!(one(".n | IN(2, 3)", r#"{"n": 3}"#), r#"{"out":true}"#);
    assert_eq!(one(".n | IN(2, 3)", r#"{"n": 4}"#), r#"{"out":false}"#);
    assert_eq!(
        one(
            ".rows | INDEX(.id)",
            r#"{"rows": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}"#
        ),
        r#"{"out":{"1":{"id":1,"v":"a"},"2":{"id":2,"v":"b"}}}"#
    );
    assert_eq!(one(".s | trimstr(\"-\")", r#"{"s": "-x-"}"#), r#"{"out":"x"}"#);
    assert!(run("{out: ({} | @csv)}", "{}").is_err(), "only an array is a CSV row");
    assert_eq!(
        one(".xs | join(\"-\")", r#"{"xs": ["a", null, 2, false]}"#),
        r#"{"out":"a--2-false"}"#
    );
    assert_eq!(
        one("[.xs[] | ltrimstr(\"ab\")]", r#"{"xs": ["abc", "xab"]}"#),
        r#"{"out":["c","xab"]}"#
    );
    assert_eq!(
        one("[.xs[] | rtrimstr(\"bc\")]", r#"{"xs": ["abc", "bcx"]}"#),
        r#"{"out":["a","bcx"]}"#
    );
    assert_eq!(
        run("{out: (7 | ltrimstr(\"a\"))}", "{}").unwrap_err().1,
        "startswith() requires string inputs"
    );
    assert_eq!(
        one(
            ".es | from_entries",
            r#"{"es": [{"k": "a", "v": 1}, {"name": "b", "value": 2}, {"key": 3, "value": 4}]}"#
        ),
        r#"{"out":{"a":1,"b":2,"3":4}}"#
    );
}

/// jq creates what an update path needs; jaq refuses to update null or
/// an array past its end.
#[test]
fn updates_create_the_path_they_need_as_jq_does() {
    let cents = ".props.revenue_cents = ((.props.revenue // 0) * 100 | round)";
    assert_eq!(
        run(cents, r#"{"id":"e1"}"#).unwrap(),
        vec![r#"{"id":"e1","props":{"revenue_cents":0}}"#],
        "the README's program on an event without props"
    );
    let one = |program: &str, input: &str| run(&format!("{{out: ({program})}}"), input).unwrap().join("");
    assert_eq!(one("null | .a.b = 1", "{}"), r#"{"out":{"a":{"b":1}}}"#);
    assert_eq!(one("null | .[2] = 1", "{}"), r#"{"out":[null,null,1]}"#);
    assert_eq!(one("[1] | .[2] = 3", "{}"), r#"{"out":[1,null,3]}"#);
    assert_eq!(one("[1, 2] | .[-1] = 9", "{}"), r#"{"out":[1,9]}"#);
    assert_eq!(one(".xs[1].n |= 5", "{}"), r#"{"out":{"xs":[null,{"n":5}]}}"#);
    assert_eq!(one("null | .[1:3] = [\"x\"]", "{}"), r#"{"out":["x"]}"#);
    assert_eq!(one("[1, 2, 3] | .[1:] = [\"x\"]", "{}"), r#"{"out":[1,"x"]}"#);
    assert_eq!(one("null | setpath([\"a\", 0]; 1)", "{}"), r#"{"out":{"a":[1]}}"#);
    let (reason, detail) = run("{out: ([1] | .[-3] = 0)}", "{}").unwrap_err();
    assert_eq!(
        (reason.as_str(), detail.as_str()),
        ("jq_error", "Out of bounds negative array index")
    );
    let (_, detail) = run("{out: ({} | .[0] = 1)}", "{}").unwrap_err();
    assert_eq!(detail, "Cannot index object with number (0)");
    let (_, detail) = run("{(1): 2}", "{}").unwrap_err();
    assert_eq!(detail, "Object keys must be strings, not number (1)");
}

/// jq deletes sorted paths from the last, and a path through null
/// deletes nothing.
#[test]
fn deletions_answer_as_jq_does() {
    let one = |program: &str, input: &str| run(&format!("{{out: ({program})}}"), input).unwrap().join("");
    assert_eq!(one("[1, 2, 3] | del(.[0, 1])", "{}"), r#"{"out":[3]}"#);
    assert_eq!(one("{} | del(.a.b)", "{}"), r#"{"out":{}}"#);
    assert_eq!(one("{a: 1, b: 2} | del(.a, .c)", "{}"), r#"{"out":{"b":2}}"#);
    assert_eq!(one("[1, 2] | del(.[5])", "{}"), r#"{"out":[1,2]}"#);
    assert_eq!(one("null | del(.a)", "{}"), r#"{"out":null}"#);
    assert_eq!(
        one("[range(10)] | del(.[1], .[-6], .[2], .[-3:9])", "{}"),
        r#"{"out":[0,3,5,6,9]}"#
    );
    assert_eq!(one("[1, 2, 3] | delpaths([[-200]])", "{}"), r#"{"out":[1,2,3]}"#);
    assert_eq!(
        one("{a: [{b: 1, c: 2}]} | del(.a[0].b)", "{}"),
        r#"{"out":{"a":[{"c":2}]}}"#
    );
    assert_eq!(
        run("{out: ({} | delpaths(0))}", "{}").unwrap_err().1,
        "Paths must be specified as an array"
    );
    assert_eq!(
        one("{a: {b: 1, c: 2}, d: 3} | pick(.a.b, .x)", "{}"),
        r#"{"out":{"a":{"b":1},"x":null}}"#
    );
    assert_eq!(one("[1, 2, 3] | pick(.[1])", "{}"), r#"{"out":[null,2]}"#);
}

/// jq's numbers: whole results print as integers, literals keep their
/// digits until arithmetic makes them doubles; jq's error texts.
#[test]
fn numbers_and_errors_answer_as_jq_does() {
    let one = |program: &str, input: &str| run(&format!("{{out: ({program})}}"), input).unwrap().join("");
    let error = |program: &str| run(&format!("{{out: ({program})}}"), "{}").unwrap_err();
    assert_eq!(one("1.5 + 0.5, 4 / 2", "{}"), r#"{"out":2}{"out":2}"#);
    assert_eq!(one(".n", r#"{"n": 13911860366432393}"#), r#"{"out":13911860366432393}"#);
    assert_eq!(
        one(".n - 10", r#"{"n": 13911860366432393}"#),
        r#"{"out":13911860366432382}"#
    );
    assert_eq!(one("[\"ab\" * (2.5, 0, -1)]", "{}"), r#"{"out":["abab","",null]}"#);
    assert_eq!(
        one("[\"+1.5\", \"7\", \".5\" | tonumber]", "{}"),
        r#"{"out":[1.5,7,0.5]}"#
    );
    assert_eq!(one("[0, 1, 2, 3] | .[1.2:2.5]", "{}"), r#"{"out":[1,2]}"#);
    assert_eq!(one("[2024, 2, 15] | mktime", "{}"), r#"{"out":1710460800}"#);
    assert_eq!(
        one("[5.5 % 2, -5 % 3, (nan % 1 | isnan)]", "{}"),
        r#"{"out":[1,-2,true]}"#
    );

    assert_eq!(
        one("[65, -1, 1114112, 55296, 66.7] | implode", "{}"),
        "{\"out\":\"A\u{FFFD}\u{FFFD}\u{FFFD}B\"}"
    );
    assert_eq!(one("\"nan\" | fromjson | isnan", "{}"), r#"{"out":true}"#);
    assert_eq!(
        one(
            "builtins | [length > 100, index(\"map/1\") != null, any(startswith(\"_\"))]",
            "{}"
        ),
        r#"{"out":[true,true,false]}"#
    );
    assert_eq!(
        error("1 / 0").1,
        "number (1) and number (0) cannot be divided because the divisor is zero"
    );
    assert_eq!(error("-\"abc\"").1, r#"string ("abc") cannot be negated"#);
    assert_eq!(error("{} + 1").1, "object ({}) and number (1) cannot be added");
    assert_eq!(
        error("\"a very long string of many words\" | -.").1,
        r#"string ("a very long string of ma...") cannot be negated"#
    );
    assert_eq!(
        error("\"12x\" | tonumber").1,
        r#"string ("12x") cannot be parsed as a number"#
    );
    assert_eq!(error("[limit(-1; 1)]").1, "limit doesn't support negative count");
    assert_eq!(error("{a: 1} | .[0]").1, "Cannot index object with number (0)");
}

/// `?//`: the next pattern when destructuring or the body fails, every
/// pattern's variables bound (null where unused).
#[test]
fn destructuring_alternatives_answer_as_jq_does() {
    let all = |program: &str, input: &str| run(&format!("{{out: [{program}]}}"), input).unwrap().join("");
    assert_eq!(
        all(
            ".xs[] as [$a] ?// [$b] | if $a != null then error(\"err: \\($a)\") else {$a, $b} end",
            r#"{"xs": [[3]]}"#
        ),
        r#"{"out":[{"a":null,"b":3}]}"#
    );
    assert_eq!(
        all(
            ".xs[] | . as {a: $a} ?// [$a] ?// $a | $a",
            r#"{"xs": [{"a": 1}, [2], 3]}"#
        ),
        r#"{"out":[1,2,3]}"#
    );
    assert_eq!(all(". as [$a] ?// {a: $a} | $a", "{}"), r#"{"out":[null]}"#);
    let (reason, detail) = run("{out: (.x as [$a] ?// {a: $a} | $a)}", r#"{"x": 1}"#).unwrap_err();
    assert_eq!(
        (reason.as_str(), detail.as_str()),
        ("jq_error", r#"Cannot index number with string ("a")"#),
        "the last alternative's error stands"
    );
}

#[test]
fn a_program_rewrites_drops_or_fans_out() {
    let cents = ".props.revenue_cents = ((.props.revenue // 0) * 100 | round) | del(.page.referrer)";
    assert_eq!(
        run(
            cents,
            r#"{"props":{"revenue":12.34},"page":{"url":"u","referrer":"r"}}"#
        )
        .unwrap(),
        vec![r#"{"props":{"revenue":12.34,"revenue_cents":1234},"page":{"url":"u"}}"#]
    );
    assert_eq!(run("select(.n > 1)", r#"{"n":1}"#).unwrap(), Vec::<String>::new());
    assert_eq!(
        run(".items[] | {sku}", r#"{"items":[{"sku":"a"},{"sku":"b"}]}"#).unwrap(),
        vec![r#"{"sku":"a"}"#, r#"{"sku":"b"}"#]
    );
}

#[test]
fn errors_and_non_objects_are_refused_with_a_reason() {
    let (reason, detail) = run(r#"error("no thanks")"#, "{}").unwrap_err();
    assert_eq!(reason, "jq_error");
    assert!(detail.contains("no thanks"), "{detail}");
    assert_eq!(run(".n + 1", r#"{"n":1}"#).unwrap_err().0, "jq_output");
    assert_eq!(
        run("{x: nan, y: infinite}", "{}").unwrap(),
        vec![r#"{"x":null,"y":1.7976931348623157e308}"#]
    );
    assert_eq!(run(".", "{").unwrap_err().0, "invalid_json");
    assert_eq!(
        run(".", r#"{"s":"quote \" tab \t nul \u0000 é"}"#).unwrap(),
        vec![r#"{"s":"quote \" tab \t nul \u0000 é"}"#]
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    let err = JqTransform::new(".a |\n  .b | (", JqLimits::default()).err().unwrap();
    assert!(
        err.starts_with("line 2, column 9: expected closing parenthesis"),
        "{err}"
    );
    let err = JqTransform::new(".a)\n", JqLimits::default()).err().unwrap();
    assert!(err.starts_with("line 1, column 3: expected"), "{err}");
    let err = JqTransform::new(".a | nosuchfn(1)", JqLimits::default()).err().unwrap();
    assert!(
        err.contains("line 1, column 6: undefined") && err.contains("nosuchfn"),
        "{err}"
    );
}

#[test]
fn outputs_past_the_output_limit_are_refused_by_name() {
    let limits = JqLimits {
        output_mib: 1,
        ..JqLimits::default()
    };
    let program = Program::compile(".n as $n | {xs: [range($n)]}").unwrap();
    assert!(program.run(br#"{"n": 1000}"#, &limits).is_ok());
    let (reason, detail) = program.run(br#"{"n": 300000}"#, &limits).unwrap_err();
    assert_eq!(reason, "jq_limit:output");
    assert_eq!(
        detail,
        "the program emitted more than 1 MiB of JSON (limits.output_mib)"
    );
    let fan_out = Program::compile("range(200000) | {i: .}").unwrap();
    assert_eq!(
        fan_out.run(b"{}", &limits).unwrap_err().0,
        "jq_limit:output",
        "the outputs of one event add up"
    );
}

#[test]
fn limits_out_of_range_name_the_key_and_the_range() {
    let limits = |text: &str| {
        toml::from_str::<JqLimits>(text)
            .map_err(|e| e.to_string())
            .and_then(|l| l.check().map(|()| l))
    };
    assert_eq!(limits("").unwrap(), JqLimits::default());
    assert_eq!(limits("time_ms = 50").unwrap().time_ms, 50);
    assert_eq!(
        limits("memory_mib = 8").unwrap_err(),
        "limits.memory_mib: 8 is out of range; allowed: 16 to 65536"
    );
    assert!(limits("seconds = 1").unwrap_err().contains("unknown field `seconds`"));
}
