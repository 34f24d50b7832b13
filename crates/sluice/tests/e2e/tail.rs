//! `sluice tail` on a running pipeline (files -> jq -> validate -> lake),
//! as an operator uses it while events flow:
//!
//! * `tail PIPELINE marked --limit 5` prints five events as the jq
//!   transform emitted them (its mark set) and exits;
//! * `tail PIPELINE input --follow` prints the source's events as they
//!   were read, until interrupted;
//! * `tail PIPELINE lake --limit 3`: what the sink is handed (validated,
//!   the mark kept);
//! * an unknown stage is refused with the pipeline's stage names.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{outages::start_logged, support};

fn tail(dir: &std::path::Path, args: &[&str]) -> Child {
    Command::new(support::SLUICE)
        .arg("tail")
        .arg(dir.join("pipeline.toml"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lines `child` prints, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_what_a_stage_emits_while_events_flow() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 6_000, 33);
    let api = support::free_port();
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            "[api]\naddress = \"127.0.0.1:{api}\"\n\n\
             [sources.input]\ntype = \"file\"\npath = \"incoming/*.ndjson\"\nsettle_secs = 0\n\n\
             [transforms.marked]\ntype = \"jq\"\ninputs = [\"input\"]\nprogram = '.tailed = true'\n\n\
             [transforms.standardize]\ntype = \"validate\"\ninputs = [\"marked\"]\nschema = \"{}\"\n\
             event_id = \"/event_id\"\nevent_time = \"/ts\"\n\n\
             [sinks.lake]\ntype = \"lake\"\ninputs = [\"standardize\"]\nuri = \"lake/t\"\nflush_interval_secs = 1\n",
            support::schema_path().display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    let sluice = start_logged(dir, api);
    let sent: HashSet<&str> = lines.iter().map(String::as_str).collect();

    let mut marked = tail(dir, &["marked", "--limit", "5"]);
    let mut follow = tail(dir, &["input", "--follow"]);
    let mut sink = tail(dir, &["lake", "--limit", "3"]);
    let followed = lines_of(&mut follow);
    // Files keep arriving until both limited tails have had their events.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut part = 0;
    while marked.try_wait().unwrap().is_none() || sink.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the tails did not end");
        if let Some(chunk) = lines.get(part * 100..(part + 1) * 100) {
            std::fs::write(dir.join(format!("incoming/{part}.ndjson")), chunk.join("\n") + "\n").unwrap();
            part += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (child, limit) in [(marked, 5), (sink, 3)] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(printed.len(), limit);
        for event in printed {
            assert_eq!(event["tailed"], true, "as the jq transform emitted it: {event}");
        }
    }

    let mut from_source = Vec::new();
    while from_source.len() < 50 {
        let line = followed
            .recv_timeout(Duration::from_secs(30))
            .expect("the source's events");
        from_source.push(line);
    }
    assert!(follow.try_wait().unwrap().is_none(), "--follow keeps going");
    follow.kill().unwrap();
    for line in &from_source {
        assert!(sent.contains(line.as_str()), "a line as it was read: {line}");
    }

    let unknown = Command::new(support::SLUICE)
        .arg("tail")
        .arg(dir.join("pipeline.toml"))
        .arg("nope")
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no stage \"nope\"") && said.contains("input, lake, marked, standardize"),
        "{said}"
    );
    sluice.stop();
}
