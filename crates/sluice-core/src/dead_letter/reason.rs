//! Every dead-letter reason, defined once: its code, the form it takes, the
//! components that give it and what it means. Components refer to these
//! constants instead of writing reason strings, and
//! `docs/reference/dead-letter-reasons.md` is rendered from [`ALL`]
//! ([`reference_markdown`]; a test fails when the file is stale).
//!
//! A reason is machine-readable: its code, then for some codes `:` and a
//! JSON pointer into the event (`schema:/user/id:required`). The detail
//! beside it is for people.

use std::fmt::Write as _;

/// One dead-letter reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Reason {
    pub code: &'static str,
    /// How the stored reason is written (`code`, or `code:<pointer>`).
    pub form: &'static str,
    /// The component types that give it.
    pub given_by: &'static str,
    pub meaning: &'static str,
}

/// Declares each reason's constant and its catalogue entry together.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $name:ident = $code:literal, form $form:literal, by $by:literal;)*) => {
        $($(#[doc = $doc])+ pub const $name: &str = $code;)*

        /// Every reason, in the order of the reference.
        pub const ALL: &[Reason] = &[$(Reason {
            code: $code,
            form: $form,
            given_by: $by,
            meaning: concat!($($doc, "\n"),+),
        }),*];
    };
}

reasons! {
    /// The line is not JSON (or not UTF-8).
    INVALID_JSON = "invalid_json", form "invalid_json", by "validate, self_describing, snowplow, jq, operations, lookup, documents, postgres, lake";
    /// The line is JSON but not an object.
    NOT_AN_OBJECT = "not_an_object", form "not_an_object", by "validate, self_describing, jq, operations, lookup, postgres";
    /// The event breaks its JSON Schema: the pointer names the value (for
    /// `required`, the missing member) and the keyword the rule it broke.
    SCHEMA = "schema", form "schema:<pointer>:<keyword>", by "validate, self_describing, snowplow";
    /// The event id pointer holds no string or number.
    MISSING_EVENT_ID = "missing_event_id", form "missing_event_id", by "validate, self_describing, avro";
    /// The event time is not an RFC 3339 time, or lies outside the years a
    /// partition can name.
    BAD_EVENT_TIME = "bad_event_time", form "bad_event_time", by "validate, self_describing, avro, lake";
    /// The event time pointer holds nothing, or no stage before the lake
    /// set the event time.
    MISSING_EVENT_TIME = "missing_event_time", form "missing_event_time", by "validate, self_describing, avro, lake";
    /// A value a partition key needs (the field a bucket hashes) is absent.
    MISSING_PARTITION_VALUE = "missing_partition_value", form "missing_partition_value", by "lake";
    /// A value the table's column cannot hold (the detail names the column).
    ENCODE = "encode", form "encode:arrow", by "lake";
    /// A replayed event (`sluice replay`) has no event id, so the lake
    /// cannot tell which earlier row it replaces; its first copy stays.
    REPLAY_WITHOUT_ID = "replay_without_id", form "replay_without_id", by "lake";
    /// The batch was delivered `delivery.max_attempts` times without
    /// success; the detail holds the last error.
    MAX_ATTEMPTS = "max_attempts", form "max_attempts", by "queue";
    /// The engine died `delivery.max_crashes` times while the batch was the
    /// only one in flight (after a crash, batches that were in flight run
    /// one at a time); the detail says how many times.
    CRASHED_ENGINE = "crashed_engine", form "crashed_engine", by "queue";
    /// A Kafka record whose line is longer than the source's
    /// `max_record_bytes`; the detail names its topic, partition, offset and
    /// size (the bytes stay in Kafka, not in the dead letter).
    RECORD_TOO_LARGE = "record_too_large", form "record_too_large", by "kafka";
    /// A file or object that could not be read to the end, or a batch the
    /// embedded queue held as a place in a file (`queue_payloads =
    /// "reference"`) whose file changed or went before the batch was
    /// delivered (the detail names it; the bytes are empty).
    UNREADABLE_INPUT = "unreadable_input", form "unreadable_input", by "file, objects, queue";
    /// A record that does not fit its input's format (a CSV row with the
    /// wrong number of cells); the input's other records go on.
    BAD_RECORD = "bad_record", form "bad_record", by "file, objects";
    /// An object notification that is not an S3 event.
    BAD_NOTIFICATION = "bad_notification", form "bad_notification", by "objects";
    /// A self-describing event whose schema key names no registered schema
    /// (or is missing or malformed), or an Avro datum whose fingerprint no
    /// registered schema has.
    UNKNOWN_SCHEMA = "unknown_schema", form "unknown_schema", by "self_describing, snowplow, avro, lake (table_template)";
    /// A Snowplow tracker event that breaks the tracker protocol: no or an
    /// unknown event type `e`, a value that does not parse as its
    /// parameter's type, a `ue_px`/`cx` that is not base64 of a
    /// self-describing JSON (the parameter is named).
    TRACKER_PROTOCOL = "tracker_protocol", form "tracker_protocol:<parameter>", by "snowplow";
    /// An event whose schema version cannot go into its table: a column it
    /// declares has another type there (the detail names the column).
    INCOMPATIBLE_SCHEMA = "incompatible_schema", form "incompatible_schema", by "lake (table_template)";
    /// A line that is not base64 of an Avro single-object datum, or does not
    /// decode with its schema.
    INVALID_AVRO = "invalid_avro", form "invalid_avro", by "avro";
    /// The jq program raised an error (`error(...)`, a type error, ...).
    JQ_ERROR = "jq_error", form "jq_error", by "jq";
    /// The jq program emitted a value that is not a JSON object (or not
    /// JSON at all, like `nan`).
    JQ_OUTPUT = "jq_output", form "jq_output", by "jq";
    /// The jq program went past one of its per-event limits (`limits` of
    /// the transform): `time`, `memory`, `output` or `depth` (its
    /// recursion outgrew the stack); `crash` when its worker process ended
    /// on this event twice without naming a limit. The engine goes on.
    JQ_LIMIT = "jq_limit", form "jq_limit:<limit>", by "jq";
    /// `set`, `rename` or a lookup could not write the field: a value on
    /// the way is not an object.
    FIELD_CONFLICT = "field_conflict", form "field_conflict:<pointer>", by "set, rename, lookup";
    /// `cast` could not convert the value.
    CAST = "cast", form "cast:<pointer>", by "cast";
    /// `hash` met an object or array.
    HASH = "hash", form "hash:<pointer>", by "hash";
    /// The lookup key has no row (with `on_missing = "dead_letter"`).
    LOOKUP_MISSING = "lookup_missing", form "lookup_missing:<pointer>", by "lookup";
    /// A change event that is not well formed (the pointer names the part).
    INVALID_CHANGE = "invalid_change", form "invalid_change:<pointer>", by "documents";
    /// An outbound document a projection cannot read.
    PROJECTION_INPUT = "projection_input", form "projection_input", by "projection";
    /// The value's type does not fit the column (or array) already there.
    COLUMN_TYPE = "column_type", form "column_type:<pointer>", by "postgres";
    /// PostgreSQL cannot store the value (U+0000 in a string).
    UNSTORABLE_VALUE = "unstorable_value", form "unstorable_value:<pointer>", by "postgres";
    /// The field's name cannot become a column name (empty, or taken).
    COLUMN_NAME = "column_name", form "column_name:<pointer>", by "postgres";
    /// A primary-key field is missing, null, or not a string, number or
    /// boolean.
    MISSING_PRIMARY_KEY = "missing_primary_key", form "missing_primary_key:<pointer>", by "postgres";
}

/// `code:<pointer>`, the form of reasons that name a value.
pub fn at(code: &str, pointer: &str) -> String {
    format!("{code}:{pointer}")
}

/// `docs/reference/dead-letter-reasons.md`.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Dead-letter reasons\n\n\
         Generated from `crates/sluice-core/src/dead_letter/reason.rs` by\n\
         `SLUICE_BLESS=1 cargo test -p sluice-core reference`; do not edit by hand.\n\
         A dead letter keeps its reason, a detail for people and the original bytes;\n\
         `sluice dlq list` counts them by stored reason; `dlq show --reason` and\n\
         `dlq redrive --reason` select by the whole stored reason.\n\n\
         | reason | given by | meaning |\n|---|---|---|\n",
    );
    for r in ALL {
        let meaning = r.meaning.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "| `{}` | {} | {} |", r.form, r.given_by, meaning);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_their_forms_start_with_them() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ALL {
            assert!(seen.insert(r.code), "{} twice", r.code);
            assert!(r.code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{}", r.code);
            assert!(
                r.form == r.code || r.form.starts_with(&format!("{}:", r.code)),
                "{}",
                r.form
            );
        }
    }

    #[test]
    fn reasons_that_name_a_value_end_with_its_pointer() {
        assert_eq!(at(CAST, "/n"), "cast:/n");
        assert!(ALL.iter().any(|r| r.form == format!("{}:<pointer>", CAST)));
    }

    #[test]
    fn reference_is_current() {
        sluice_testkit::docs::assert_current(
            "docs/reference/dead-letter-reasons.md",
            &reference_markdown(),
            "cargo test -p sluice-core reference",
        );
    }
}
