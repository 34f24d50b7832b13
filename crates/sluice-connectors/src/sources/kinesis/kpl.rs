//! Records the Kinesis Producer Library aggregated: the magic bytes
//! `F3 89 9A C2`, a protobuf `AggregatedRecord`, and the MD5 of that
//! protobuf. Each user record inside is one record's data to Sluice; a
//! record without the magic, or whose digest does not match, is taken as it
//! is (as the KCL does).

use md5::{Digest, Md5};
use prost::Message;

const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_BYTES: usize = 16;

/// `AggregatedRecord` of the KPL's `messages.proto` (fields Sluice reads).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// `Record` of `messages.proto`: one user record.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UserRecord {
    #[prost(uint64, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
}

/// The user records of `data` when it is a well-formed KPL aggregate.
pub(crate) fn user_records(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let body = data.strip_prefix(&MAGIC)?;
    let split = body.len().checked_sub(DIGEST_BYTES)?;
    let (message, digest) = body.split_at(split);
    if Md5::digest(message).as_slice() != digest {
        return None;
    }
    let aggregate = AggregatedRecord::decode(message).ok()?;
    Some(aggregate.records.into_iter().map(|r| r.data).collect())
}

/// `records` aggregated as the KPL does (for tests and benchmarks).
#[cfg(test)]
pub(crate) fn aggregate(records: &[&[u8]]) -> Vec<u8> {
    let message = AggregatedRecord {
        partition_key_table: vec!["k".into()],
        explicit_hash_key_table: Vec::new(),
        records: records
            .iter()
            .map(|data| UserRecord {
                partition_key_index: 0,
                explicit_hash_key_index: None,
                data: data.to_vec(),
            })
            .collect(),
    }
    .encode_to_vec();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&message);
    out.extend_from_slice(&Md5::digest(&message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_unpack_and_anything_else_is_left_alone() {
        let packed = aggregate(&[b"{\"n\":1}", b"{\"n\":2}"]);
        assert_eq!(
            user_records(&packed),
            Some(vec![b"{\"n\":1}".to_vec(), b"{\"n\":2}".to_vec()])
        );
        let mut tampered = packed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(user_records(&tampered), None, "a digest that does not match");
        assert_eq!(user_records(b"{\"n\":1}"), None);
        assert_eq!(user_records(&MAGIC), None, "too short for a digest");
    }
}
