//! Backends that are not there yet: `sluice run` started while its
//! PostgreSQL cannot be reached waits for it (saying so in its log) instead
//! of exiting, and lands everything once it can. The outage is a TCP proxy
//! in front of the machine's PostgreSQL that the test starts late, so the
//! shared server never stops.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sluice_testkit::services::Service;
use tokio::net::{TcpListener, TcpStream};

use crate::{
    postgres::{connect, drop_schema, fresh_schema},
    support,
};

/// Forwards every connection on `listener` to `target`.
async fn proxy(listener: TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_sink_waits_for_its_database_and_then_lands_everything() {
    if !support::services_up(&[Service::Postgres]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 2_000, 5);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::write(dir.join("incoming/a.ndjson"), lines.join("\n") + "\n").unwrap();
    let pg = connect().await;
    let schema = fresh_schema(&pg, "outage").await;
    let real = crate::postgres::url();
    let (_, after_scheme) = real.split_once("://").unwrap();
    let host_start = after_scheme.find('@').map_or(0, |at| at + 1);
    let host_end = after_scheme.find('/').unwrap_or(after_scheme.len());
    let target = after_scheme[host_start..host_end].to_string();
    let port = support::free_port();
    let url = real.replacen(&target, &format!("127.0.0.1:{port}"), 1);
    std::fs::write(
        dir.join("pipeline.toml"),
        format!(
            r#"
[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0

[sinks.table]
type = "postgres"
inputs = ["input"]
url = "{url}"
schema = "{schema}"
table = "events"
"#
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sluice.log")).unwrap();
    let mut sluice = Command::new(support::SLUICE)
        .arg("run")
        .arg(dir.join("pipeline.toml"))
        .arg("--until-idle")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sluice.try_wait().unwrap().is_none(), "sluice waits instead of exiting");
    let waited = std::fs::read_to_string(dir.join("sluice.log")).unwrap();
    assert!(
        waited.contains("the sink's backend cannot be reached yet; waiting for it sink=table"),
        "{waited}"
    );

    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let forwarding = tokio::spawn(proxy(listener, target));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = sluice.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "sluice did not finish once PostgreSQL was there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(dir.join("sluice.log")).unwrap()
    );
    forwarding.abort();
    let rows: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as usize, lines.len(), "every line landed once");
    drop_schema(&pg, &schema).await;
}
