use std::io::{Read, Write};

use super::*;

/// Everything the reader sends for `input`.
fn read_all(input: Vec<u8>, layout: Layout, max: usize) -> Vec<Chunk> {
    let (tx, mut rx) = mpsc::channel(1024);
    read_chunks(Box::new(io::Cursor::new(input)), layout, max, &tx);
    drop(tx);
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn lines(chunks: &[Chunk]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Lines(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
            _ => None,
        })
        .flat_map(|s| s.lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

fn failure(chunks: &[Chunk]) -> Option<&ReadError> {
    chunks.iter().find_map(|c| match c {
        Chunk::Failed(e) => Some(e),
        _ => None,
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn ndjson_is_cut_at_whole_lines_and_gzip_is_found_by_its_magic() {
    let text: String = (0..100).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    for input in [text.clone().into_bytes(), gzip(text.as_bytes())] {
        let chunks = read_all(input, Layout::Ndjson, 100);
        assert!(chunks.len() > 5);
        assert!(
            chunks
                .iter()
                .all(|c| matches!(c, Chunk::Lines(b) if b.ends_with(b"\n")))
        );
        assert_eq!(lines(&chunks), text.lines().map(str::to_string).collect::<Vec<_>>());
    }
}

#[test]
fn the_same_bytes_cut_the_same_chunks() {
    let text: String = (0..500).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let cut = |c: Vec<Chunk>| -> Vec<Bytes> {
        c.into_iter()
            .filter_map(|c| match c {
                Chunk::Lines(b) => Some(b),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        cut(read_all(text.clone().into_bytes(), Layout::Ndjson, 512)),
        cut(read_all(text.into_bytes(), Layout::Ndjson, 512))
    );
}

#[test]
fn each_chunk_ends_with_the_first_line_end_that_brings_it_to_max_bytes() {
    // Lines of different lengths, one far longer than a chunk, the last unended.
    let mut text: String = (0..300)
        .map(|i| format!("{{\"n\":\"{}\"}}\n", "x".repeat(i % 37)))
        .collect();
    text.insert_str(2_000, &format!("{{\"long\":\"{}\"}}\n", "y".repeat(1_500)));
    text.push_str("{\"last\":1}");
    for max in [1, 64, 100, 512, 4_096] {
        // What a reader going line by line cuts.
        let mut expected = vec![String::new()];
        for line in text.split_inclusive('\n') {
            let current = expected.last_mut().unwrap();
            current.push_str(line);
            if current.len() >= max {
                expected.push(String::new());
            }
        }
        expected.retain(|c| !c.is_empty());
        let cut: Vec<String> = read_all(text.clone().into_bytes(), Layout::Ndjson, max)
            .into_iter()
            .map(|c| match c {
                Chunk::Lines(b) => String::from_utf8(b.to_vec()).unwrap(),
                _ => panic!("only lines expected"),
            })
            .collect();
        assert_eq!(cut, expected, "max {max}");
    }
}

#[test]
fn a_json_array_becomes_one_line_per_element() {
    let input = b"[\n  {\"a\": 1,\n   \"s\": \"x\\ny\"},\n  {\"b\": [1, 2]}, 3\n]\n".to_vec();
    let chunks = read_all(input, Layout::JsonArray, 1024);
    assert!(failure(&chunks).is_none());
    let got = lines(&chunks);
    assert_eq!(got.len(), 3);
    let first: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(first, serde_json::json!({"a": 1, "s": "x\ny"}));
    assert_eq!(got[2], "3");
}

#[test]
fn a_broken_json_array_keeps_the_elements_before_the_break() {
    let chunks = read_all(b"[{\"a\":1},{\"b\":2},{\"c\":".to_vec(), Layout::JsonArray, 1024);
    assert_eq!(lines(&chunks), vec!["{\"a\":1}", "{\"b\":2}"]);
    let e = failure(&chunks).expect("a failure");
    assert!(!e.retriable && e.message.contains("not a JSON array"), "{e:?}");
    let not_array = read_all(b"{\"a\":1}".to_vec(), Layout::JsonArray, 1024);
    assert!(failure(&not_array).is_some_and(|e| e.message.contains("a JSON array of events")));
}

#[test]
fn csv_rows_become_objects_of_strings_and_bad_rows_are_set_aside() {
    let input = b"id,name,city\n1,Ann,\"Oslo, NO\"\n2,Bob\n3,,Rome\n".to_vec();
    let chunks = read_all(gzip(&input), Layout::Csv, 1024);
    assert!(failure(&chunks).is_none());
    let rows: Vec<serde_json::Value> = lines(&chunks)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"id": "1", "name": "Ann", "city": "Oslo, NO"}),
            serde_json::json!({"id": "3", "city": "Rome"}),
        ]
    );
    let bad: Vec<(u64, &Bytes, &String)> = chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::BadRecord { record, bytes, detail } => Some((*record, bytes, detail)),
            _ => None,
        })
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0].0, &bad[0].1[..]), (2, &b"2,Bob"[..]));
    assert!(bad[0].2.contains("2 cells, the header 3"), "{}", bad[0].2);

    let dup = read_all(b"a,a\n1,2\n".to_vec(), Layout::Csv, 1024);
    assert!(failure(&dup).is_some_and(|e| e.message.contains("\"a\" appears twice")));
}

/// A reader that fails with a fetch error after `ok` bytes.
struct Broken {
    data: io::Cursor<Vec<u8>>,
    ok: u64,
    /// What the fetch says when it fails.
    error: &'static str,
}

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.position() >= self.ok {
            let cause = io::Error::other(self.error);
            return Err(io::Error::other(FetchError::new(&cause)));
        }
        let room = (self.ok - self.data.position()) as usize;
        let n = buf.len().min(room);
        self.data.read(&mut buf[..n])
    }
}

#[test]
fn a_fetch_error_is_retriable_and_a_decoding_error_is_not() {
    let text: String = (0..100).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let cases = [
        (Layout::Ndjson, "connection reset by peer", true),
        (Layout::JsonArray, "connection reset by peer", true),
        (Layout::Ndjson, "HTTP 500: internal error", false),
        (Layout::JsonArray, "HTTP 500: internal error", false),
    ];
    for (layout, error, unavailable) in cases {
        let (tx, mut rx) = mpsc::channel(1024);
        let input = match layout {
            Layout::JsonArray => format!("[{}]", text.trim_end().replace('\n', ",")).into_bytes(),
            _ => text.clone().into_bytes(),
        };
        read_chunks(
            Box::new(Broken {
                data: io::Cursor::new(input),
                ok: 300,
                error,
            }),
            layout,
            64,
            &tx,
        );
        drop(tx);
        let chunks: Vec<Chunk> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert!(
            failure(&chunks).is_some_and(|e| e.retriable && e.unavailable == unavailable),
            "{layout:?} {error}"
        );
        assert!(!lines(&chunks).is_empty());
    }
    let mut corrupt = gzip(text.as_bytes());
    corrupt.truncate(corrupt.len() / 2);
    corrupt.extend_from_slice(b"not deflate at all");
    let chunks = read_all(corrupt, Layout::Ndjson, 64);
    assert!(failure(&chunks).is_some_and(|e| !e.retriable));
}

/// The reference gives the batch size the file and objects sources cut
/// with when their config gives none.
#[test]
fn the_documented_batch_sizes_are_the_ones_used() {
    use crate::sources::{file::FileSourceConfig, objects::ObjectsSourceConfig};
    let documented = |schema: schemars::Schema| schema.as_value()["properties"]["max_batch_bytes"]["default"].as_u64();
    let file: FileSourceConfig = toml::from_str("path = \"in/*\"").unwrap();
    let objects: ObjectsSourceConfig = toml::from_str("uri = \"landing\"").unwrap();
    assert_eq!(
        documented(schemars::schema_for!(FileSourceConfig)),
        Some(file.batch_bytes() as u64)
    );
    assert_eq!(
        documented(schemars::schema_for!(ObjectsSourceConfig)),
        Some(objects.batch_bytes() as u64)
    );
}
