//! jq's test file format (`tests/jq.test` in jq's repository): groups of
//! lines separated by blank lines, `#` starting a comment line. A group is
//! a program, an input and the outputs it must give, one JSON value per
//! line; a group opened by `%%FAIL` is a program that must not compile,
//! followed by the error jq prints.

/// One case of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Line of the program in the file (1-based), to name the case.
    pub line: usize,
    pub program: String,
    /// The input JSON text (absent for a must-fail case).
    pub input: Option<String>,
    /// The expected outputs, one JSON text each.
    pub expected: Vec<String>,
    /// The program must not compile.
    pub must_fail: bool,
}

impl Case {
    /// Whether the case needs what Sluice leaves out on purpose: modules
    /// (`import`, `include`, `modulemeta`) and reading further inputs.
    pub fn excluded(&self) -> bool {
        let words: Vec<&str> = self
            .program
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
            .collect();
        words.iter().any(|w| {
            matches!(
                *w,
                "import" | "include" | "modulemeta" | "input" | "inputs" | "get_search_list" | "$__prog_args"
            )
        })
    }
}

/// The cases of a test file's text.
pub fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut group: Vec<(usize, &str)> = Vec::new();
    let lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    for (number, line) in lines.chain(std::iter::once((0, ""))) {
        if line.trim().is_empty() {
            if let Some(case) = case_of(&group) {
                cases.push(case);
            }
            group.clear();
        } else if !line.starts_with('#') {
            group.push((number, line));
        }
    }
    cases
}

fn case_of(group: &[(usize, &str)]) -> Option<Case> {
    let (first_line, first) = *group.first()?;
    if first.starts_with("%%FAIL") {
        let (line, program) = *group.get(1)?;
        return Some(Case {
            line,
            program: program.to_string(),
            input: None,
            expected: Vec::new(),
            must_fail: true,
        });
    }
    let (_, input) = *group.get(1)?;
    Some(Case {
        line: first_line,
        program: first.to_string(),
        input: Some(input.trim_start_matches('\u{feff}').to_string()),
        expected: group[2..].iter().map(|(_, l)| l.to_string()).collect(),
        must_fail: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_become_cases_and_comments_are_skipped() {
        let text = "# a comment\n\n.a\n{\"a\":1}\n1\n\n# another\n[.[]|.+1]\n[1,2]\n[2,3]\n\n%%FAIL\n{(0):1}\njq: error: Object keys must be strings\n\nempty\nnull\n";
        let cases = parse(text);
        assert_eq!(cases.len(), 4);
        assert_eq!(
            cases[0],
            Case {
                line: 3,
                program: ".a".into(),
                input: Some("{\"a\":1}".into()),
                expected: vec!["1".into()],
                must_fail: false
            }
        );
        assert_eq!(cases[1].expected, vec!["[2,3]"]);
        assert!(cases[2].must_fail && cases[2].program == "{(0):1}" && cases[2].line == 13);
        assert!(cases[3].expected.is_empty(), "a program may emit nothing");
    }

    #[test]
    fn modules_and_further_inputs_are_excluded() {
        let case = |program: &str| Case {
            line: 1,
            program: program.into(),
            input: Some("null".into()),
            expected: Vec::new(),
            must_fail: false,
        };
        assert!(case("import \"a\" as a; a::f").excluded());
        assert!(case("[., input]").excluded());
        assert!(!case("[.[] | inputs_seen]").excluded(), "only whole words count");
    }
}
