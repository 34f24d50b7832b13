//! A running engine's `/metrics` as samples: metric name, labels, value,
//! parsed from the Prometheus text format the API serves.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: Vec<Sample>,
}

impl Scrape {
    /// The samples of `text`; comment and malformed lines are skipped.
    pub fn parse(text: &str) -> Scrape {
        Scrape {
            samples: text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(sample)
                .collect(),
        }
    }

    fn matching<'a>(&'a self, name: &'a str, with: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.samples
            .iter()
            .filter(move |s| s.name == name && with.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v)))
    }

    /// The sum of the samples of `name` whose labels include `with`;
    /// `None` when there is none.
    pub fn value(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.matching(name, with).peekable();
        found.peek()?;
        Some(found.map(|s| s.value).sum())
    }
}

/// `name{label="value",...} value [timestamp]`.
fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut chars = line[name_end..].chars().peekable();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            let key = key.trim_matches(|c: char| c == ',' || c.is_whitespace());
            if key.is_empty() {
                return None;
            }
            if chars.next()? != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key.to_string(), value);
            match chars.next()? {
                ',' if chars.peek() == Some(&'}') => {
                    chars.next();
                    break;
                }
                ',' => {}
                '}' => break,
                _ => return None,
            }
        }
    }
    let rest: String = chars.collect();
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_escaped_labels_and_sums_over_them() {
        let scrape = Scrape::parse(
            "# HELP x y\n\
             sluice_dead_letters_total{component=\"v\",reason=\"schema:/a \\\"b\\\"\"} 3\n\
             sluice_dead_letters_total{component=\"v\",reason=\"invalid_json\"} 4\n\
             sluice_queue_depth_batches 12\n\
             sluice_sink_flush_seconds{component=\"lake\",quantile=\"0.99\"} 0.25\n\
             broken{component=\"x\" 1\n",
        );
        assert_eq!(
            scrape.value("sluice_dead_letters_total", &[("component", "v")]),
            Some(7.0)
        );
        assert_eq!(
            scrape.value("sluice_dead_letters_total", &[("reason", "schema:/a \"b\"")]),
            Some(3.0)
        );
        assert_eq!(scrape.value("sluice_queue_depth_batches", &[]), Some(12.0));
        assert_eq!(
            scrape.value(
                "sluice_sink_flush_seconds",
                &[("component", "lake"), ("quantile", "0.99")]
            ),
            Some(0.25)
        );
        assert_eq!(scrape.value("sluice_queue_bytes", &[]), None);
        assert_eq!(scrape.value("broken", &[]), None, "a malformed line is skipped");
    }
}
