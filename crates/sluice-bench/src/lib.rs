//! What the bench command and the criterion benches share: the jq program
//! they measure.

/// The jq program the bench measures: what a user would write to derive cents.
pub const JQ_PROGRAM: &str = r#"if .event_type == "purchase" then .props.revenue_cents = (.props.revenue * 100 | round) else . end | del(.page.referrer)"#;
