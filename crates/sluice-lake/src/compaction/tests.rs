use sluice_core::{Event, Sink};

use super::*;
use crate::{
    LakeSink, distinct_strings,
    sink::tests::{event, open_with},
    summarize,
};

fn options(scope: Scope) -> CompactionOptions {
    CompactionOptions {
        scope,
        target_file_bytes: 1024 * 1024,
        compression: ParquetCompression::Zstd,
        id_column: vec!["id".into()],
        run_id: None,
    }
}

fn no_progress(_: &PartitionReport, _: usize) -> bool {
    true
}

async fn load(url: &StoreLocation) -> DeltaTable {
    url.builder().unwrap().load().await.unwrap()
}

/// Writes `batches` as separate flushes (so separate files), without the
/// write-time dedupe window.
async fn write(sink: &mut LakeSink, batches: Vec<Vec<Event>>) {
    static KEYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for events in batches {
        let key = KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        sink.accept(&format!("k{key}"), false, events).await.unwrap();
        sink.flush().await.unwrap();
    }
}

fn ev(id: &str, hour: u32) -> Event {
    event(0, id, &format!("2026-11-01T{hour:02}:10:00Z"), "1")
}

#[tokio::test]
async fn compaction_merges_files_drops_duplicates_and_is_idempotent() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |_| {}).await;
    write(
        &mut sink,
        vec![
            vec![ev("a", 0), ev("b", 0), ev("x", 1)],
            vec![ev("a", 0), ev("c", 0)],
            vec![ev("b", 0), ev("x", 1), ev("y", 1)],
        ],
    )
    .await;
    let before = summarize(&url).await.unwrap();
    assert_eq!((before.rows, before.files), (8, 5));

    let report = compact(&url, &options(Scope::All), &no_progress).await.unwrap();
    assert_eq!(report.partitions.len(), 2);
    assert_eq!(
        (report.partitions[0].version, report.partitions[1].version),
        (before.version + 1, before.version + 1),
        "both partitions in one commit"
    );
    assert_eq!(report.sum(|p| p.duplicates_removed), 3);
    assert_eq!(report.sum(|p| p.files_in), 5);
    assert_eq!(report.sum(|p| p.files_out), 2);
    let after = summarize(&url).await.unwrap();
    assert_eq!((after.rows, after.files), (5, 2));
    let ids = distinct_strings(&url, "id").await.unwrap();
    assert_eq!(ids.len(), 5);
    assert!(active_files(&load(&url).await).unwrap().iter().all(|f| f.compacted));

    let again = compact(&url, &options(Scope::All), &no_progress).await.unwrap();
    assert!(again.partitions.is_empty(), "{again:?}");
    assert_eq!(
        summarize(&url).await.unwrap().version,
        after.version,
        "nothing committed"
    );
}

#[tokio::test]
async fn new_files_reopen_only_their_partition_and_keep_the_first_copy() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |_| {}).await;
    write(&mut sink, vec![vec![ev("a", 0), ev("x", 1)]]).await;
    compact(&url, &options(Scope::All), &no_progress).await.unwrap();
    // A late copy of `a` with other content, and a new event, reach hour 0.
    let mut late = ev("a", 0);
    late.payload = bytes::Bytes::from_static(br#"{"id":"a","ts":"2026-11-01T00:10:00Z","n":1,"extra":{"k":[9]}}"#);
    write(&mut sink, vec![vec![late, ev("b", 0)]]).await;
    let report = compact(&url, &options(Scope::All), &no_progress).await.unwrap();
    assert_eq!(report.partitions.len(), 1);
    assert_eq!(report.partitions[0].partition, "dt=2026-11-01/hour=00");
    assert_eq!(report.partitions[0].duplicates_removed, 1);
    assert_eq!(summarize(&url).await.unwrap().rows, 3);
    let extra = distinct_strings(&url, "extra").await.unwrap();
    assert_eq!(
        extra.len(),
        1,
        "the first copy of `a` is kept, not the late one: {extra:?}"
    );
}

#[tokio::test]
async fn a_commit_is_refused_once_its_inputs_were_replaced() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |_| {}).await;
    write(&mut sink, vec![vec![ev("a", 0)], vec![ev("a", 0), ev("b", 0)]]).await;

    // Two compactions plan and rewrite the same partition; one commits first.
    let mut first = load(&url).await;
    let mut second = load(&url).await;
    let job = plan::plan(&active_files(&first).unwrap(), Scope::All).remove(0);
    let a = rewrite(&first, &job, &options(Scope::All)).await.unwrap();
    let b = rewrite(&second, &job, &options(Scope::All)).await.unwrap();
    let won = commit_while_inputs_active(&mut first, &url, &[(&job, &a)], &options(Scope::All))
        .await
        .unwrap();
    assert_eq!(won, Some(summarize(&url).await.unwrap().version));
    let lost = commit_while_inputs_active(&mut second, &url, &[(&job, &b)], &options(Scope::All))
        .await
        .unwrap();
    assert_eq!(lost, None, "the loser must not commit a second copy of the rows");
    assert_eq!(summarize(&url).await.unwrap().rows, 2);
}

#[tokio::test]
async fn a_group_that_lost_a_race_is_compacted_partition_by_partition() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |_| {}).await;
    write(
        &mut sink,
        vec![vec![ev("a", 0), ev("x", 1)], vec![ev("a", 0), ev("x", 1), ev("y", 1)]],
    )
    .await;
    let mut table = load(&url).await;
    let jobs = plan::plan(&active_files(&table).unwrap(), Scope::All);
    assert_eq!(jobs.len(), 2);
    // Another compaction replaces hour 1 after this one planned it.
    let mut other = load(&url).await;
    let hour_1 = jobs[1].clone();
    let done = rewrite(&other, &hour_1, &options(Scope::All)).await.unwrap();
    commit_while_inputs_active(&mut other, &url, &[(&hour_1, &done)], &options(Scope::All))
        .await
        .unwrap()
        .unwrap();

    let mut conflicts = 0;
    let outcomes = compact_group(&mut table, &url, jobs, &options(Scope::All), &mut conflicts)
        .await
        .unwrap();
    assert!(conflicts >= 1);
    assert!(matches!(&outcomes[0], Outcome::Compacted(p) if p.partition == "dt=2026-11-01/hour=00"));
    assert!(matches!(&outcomes[1], Outcome::LeftForLater(name) if name == "dt=2026-11-01/hour=01"));
    let after = summarize(&url).await.unwrap();
    assert_eq!(after.rows, 3, "each id once: a, x, y");
    assert!(active_files(&load(&url).await).unwrap().iter().all(|f| f.compacted));
}

#[tokio::test]
async fn rows_a_writer_appends_meanwhile_are_kept() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |_| {}).await;
    write(&mut sink, vec![vec![ev("a", 0)], vec![ev("b", 0)]]).await;
    let mut table = load(&url).await;
    let job = plan::plan(&active_files(&table).unwrap(), Scope::All).remove(0);
    let rewritten = rewrite(&table, &job, &options(Scope::All)).await.unwrap();

    // The writer commits a new file to the same partition before the compaction commits.
    sink.accept("late", false, vec![ev("c", 0)]).await.unwrap();
    sink.flush().await.unwrap();

    let committed = commit_while_inputs_active(&mut table, &url, &[(&job, &rewritten)], &options(Scope::All))
        .await
        .unwrap();
    assert!(committed.is_some(), "a writer's append does not stop the compaction");
    let after = summarize(&url).await.unwrap();
    assert_eq!((after.rows, after.files), (3, 2));
    let ids = distinct_strings(&url, "id").await.unwrap();
    assert!(ids.contains("c"));
    // The writer goes on appending after the compaction.
    sink.accept("later", false, vec![ev("d", 0)]).await.unwrap();
    sink.flush().await.unwrap();
    assert_eq!(summarize(&url).await.unwrap().rows, 4);
}

#[tokio::test]
async fn the_look_back_leaves_older_arrivals_alone() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |_| {}).await;
    write(&mut sink, vec![vec![ev("a", 0)], vec![ev("b", 0)]]).await;
    let future = Scope::Since {
        cutoff_ms: sluice_core::now_ms() + 60_000,
    };
    let report = compact(&url, &options(future), &no_progress).await.unwrap();
    assert!(report.partitions.is_empty());
    let recent = Scope::Since {
        cutoff_ms: sluice_core::now_ms() - 60_000,
    };
    let report = compact(&url, &options(recent), &no_progress).await.unwrap();
    assert_eq!(report.partitions.len(), 1);
}

#[tokio::test]
async fn large_partitions_are_cut_at_the_target_size() {
    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |_| {}).await;
    // Incompressible text so the files have a predictable size.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = || {
        (0..400)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect::<String>()
    };
    let batches: Vec<Vec<Event>> = (0..6)
        .map(|b| {
            (0..2_000)
                .map(|i| {
                    let mut e = ev(&format!("{b}-{i}"), 0);
                    e.payload = bytes::Bytes::from(format!(
                        r#"{{"id":"{b}-{i}","ts":"2026-11-01T00:10:00Z","n":1,"extra":"{}"}}"#,
                        noise()
                    ));
                    e
                })
                .collect()
        })
        .collect();
    write(&mut sink, batches).await;
    let report = compact(&url, &options(Scope::All), &no_progress).await.unwrap();
    let p = &report.partitions[0];
    let bound = p.bytes_out.div_ceil(1024 * 1024);
    assert!(p.files_out >= 2, "{p:?}");
    assert!(p.files_out <= bound, "{} files for {} bytes", p.files_out, p.bytes_out);
    assert_eq!(p.rows_out, 12_000);
}

/// Of each active file: whether it is compacted, the codec of its column
/// chunks (a file does not record zstd's level), which columns have a
/// dictionary and which have min/max statistics.
async fn file_settings(url: &StoreLocation, root: &std::path::Path) -> Vec<FileSettings> {
    use deltalake::parquet::{
        basic::Compression,
        file::reader::{FileReader, SerializedFileReader},
    };
    let mut seen = Vec::new();
    for file in active_files(&load(url).await).unwrap() {
        // Partition values here are digits: the path needs no decoding.
        let reader = SerializedFileReader::new(std::fs::File::open(root.join(&file.path)).unwrap()).unwrap();
        for group in reader.metadata().row_groups() {
            let codec = group.column(0).compression();
            assert!(group.columns().iter().all(|c| c.compression() == codec));
            let codec = match codec {
                Compression::SNAPPY => "snappy",
                Compression::ZSTD(_) => "zstd",
                Compression::LZ4_RAW => "lz4",
                other => panic!("unexpected codec {other:?}"),
            };
            let dictionaries = group
                .columns()
                .iter()
                .filter(|c| c.dictionary_page_offset().is_some())
                .map(|c| c.column_path().string())
                .collect();
            let statistics = group
                .columns()
                .iter()
                .filter(|c| c.statistics().is_some_and(|s| s.min_bytes_opt().is_some()))
                .map(|c| c.column_path().string())
                .collect();
            seen.push((file.compacted, codec, dictionaries, statistics));
        }
    }
    seen.sort();
    seen.dedup();
    seen
}

/// Whether compacted, codec, columns with a dictionary, columns with statistics.
type FileSettings = (bool, &'static str, Vec<String>, Vec<String>);

#[tokio::test]
async fn ingest_files_are_snappy_without_dictionaries_compacted_ones_zstd_with_them_except_for_ids() {
    let defaults: crate::LakeSinkConfig = serde_json::from_str(r#"{"uri": "t"}"#).unwrap();
    assert_eq!(defaults.compression, ParquetCompression::Snappy);
    assert_eq!(defaults.compaction.compression, ParquetCompression::Zstd);

    let dir = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&dir, |_| {}).await;
    write(&mut sink, vec![vec![ev("a", 0)], vec![ev("b", 0)], vec![ev("c", 1)]]).await;
    let root = dir.path().join("t");
    let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let (id_and_time, all) = (names(&["id", "ts"]), names(&["id", "ts", "n", "extra"]));
    assert_eq!(
        file_settings(&url, &root).await,
        vec![(false, "snappy", Vec::new(), id_and_time.clone())]
    );

    compact(&url, &options(Scope::All), &no_progress).await.unwrap();
    assert_eq!(
        file_settings(&url, &root).await,
        vec![(true, "zstd", names(&["ts", "n", "extra"]), all)]
    );

    let other = sluice_testkit::tempdir().unwrap();
    let (mut sink, url) = open_with(&other, |c| c.compression = ParquetCompression::Lz4).await;
    write(&mut sink, vec![vec![ev("a", 0)]]).await;
    assert_eq!(
        file_settings(&url, &other.path().join("t")).await,
        vec![(false, "lz4", Vec::new(), id_and_time)]
    );
}
