//! TLS to the backends, against real servers: the machine's PostgreSQL
//! (which serves TLS with its own certificate for `localhost`) with
//! `sslmode=verify-full`, and a NATS server this test starts with TLS on a
//! certificate of a test authority, trusted through `NATS_CA` as the
//! `nats` command reads it. The lines land in both; without the CA the run
//! ends at once with the reason instead of waiting; a wrong `sslmode` is a
//! config error naming the key. A Redis server started with TLS only
//! (`rediss://`, its authority in `redis_ca_file`) receives a projection
//! equal to the oracle.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sluice_testkit::{services::Service, tls};

use crate::{
    documents,
    postgres::{connect, drop_schema, fresh_schema, one_i64},
    support,
};

/// A server process started by a test; killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port` (at most 20 s).
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `nats-server` with JetStream and TLS on a free port.
fn tls_nats(dir: &std::path::Path, cert: &tls::ServerCert) -> (Server, u16) {
    let port = support::free_port();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
        .arg("-sd")
        .arg(dir.join("nats"))
        .arg("--tls")
        .arg("--tlscert")
        .arg(&cert.cert)
        .arg("--tlskey")
        .arg(&cert.key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is installed (scripts/test needs it)");
    let server = Server(child);
    wait_listening(port, "nats-server");
    (server, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_land_in_postgres_and_nats_over_verified_tls() {
    if !support::services_up(&[Service::Postgres, Service::Nats]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 1_000, 12);
    std::fs::create_dir_all(dir.join("incoming")).unwrap();
    std::fs::write(dir.join("incoming/a.ndjson"), lines.join("\n") + "\n").unwrap();
    let ca = tls::authority(dir, "nats-ca");
    let (_nats, nats_port) = tls_nats(dir, &tls::server_cert(dir, &ca, "nats"));

    let pg = connect().await;
    let schema = fresh_schema(&pg, "tls").await;
    let pg_cert: String = pg.query_one("SHOW ssl_cert_file", &[]).await.unwrap().get(0);
    let pg_url = format!(
        "{}?sslmode=verify-full&sslrootcert={pg_cert}",
        crate::postgres::url().replacen("127.0.0.1", "localhost", 1)
    );
    let stream = format!("SLUICE_E2E_TLS_{}", std::process::id());
    let pipeline = |pg_url: &str| {
        format!(
            r#"
[sources.input]
type = "file"
path = "incoming/*.ndjson"
settle_secs = 0

[sinks.table]
type = "postgres"
inputs = ["input"]
url = "{pg_url}"
schema = "{schema}"
table = "events"

[sinks.processed]
type = "stream"
inputs = ["input"]
url = "tls://localhost:{port}"
subject = "sluice.e2e.tls"
stream = "{stream}"
"#,
            port = nats_port
        )
    };
    std::fs::write(dir.join("pipeline.toml"), pipeline(&pg_url)).unwrap();

    // Without the authority the NATS certificate is not trusted: the run
    // ends with the reason, it does not wait for a server that is up.
    let started = Instant::now();
    let refused = Command::new(support::SLUICE)
        .arg("run")
        .arg(dir.join("pipeline.toml"))
        .arg("--until-idle")
        .env_remove("NATS_CA")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("UnknownIssuer") || stderr.contains("invalid peer certificate"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());

    crate::postgres::run_until_idle(dir, &[("NATS_CA", ca.cert.to_str().unwrap())]);
    let rows = one_i64(&pg, &format!("SELECT count(*) FROM {schema}.events")).await;
    assert_eq!(rows as usize, lines.len());
    // This process's own NATS client takes rustls's process default.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(ca.cert.clone())
        .require_tls(true)
        .connect(format!("tls://localhost:{nats_port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let published = js
        .get_stream(&stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(published as usize, lines.len());

    // A mode libpq does not have is refused when the file is read.
    std::fs::write(
        dir.join("pipeline.toml"),
        pipeline(&format!("{}?sslmode=always", crate::postgres::url())),
    )
    .unwrap();
    let checked = Command::new(support::SLUICE)
        .arg("validate")
        .arg(dir.join("pipeline.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success());
    assert!(
        stderr.contains("sinks.table") && stderr.contains("url: sslmode: \"always\" is not allowed; allowed: disable"),
        "{stderr}"
    );
    drop_schema(&pg, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_lands_in_a_redis_that_speaks_only_tls() {
    if !support::services_up(&[Service::Redis]) {
        return;
    }
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let oracle = documents::generate_sized(dir, 77, 3_000, 200);
    documents::deliver(dir, 0..5);
    let ca = tls::authority(dir, "redis-ca");
    let cert = tls::server_cert(dir, &ca, "redis");
    let port = support::free_port();
    let _redis = Server(
        Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(&cert.cert)
            .arg("--tls-key-file")
            .arg(&cert.key)
            .arg("--tls-ca-cert-file")
            .arg(&ca.cert)
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed"),
    );
    wait_listening(port, "redis-server");
    let prefix = "tls:";
    let projection = format!(
        r#"
[sinks.cards]
type = "projection"
inputs = ["doctors.changes"]
redis = "rediss://localhost:{port}"
redis_ca_file = "redis-ca.pem"
key = "{prefix}{{entity}}:{{id}}"
entity = "doctor"
fields = {{ name = "/name", specialty = "/specialty" }}
"#
    );
    std::fs::write(dir.join("pipeline.toml"), documents::pipeline("embedded") + &projection).unwrap();
    crate::postgres::run_until_idle(dir, &[]);

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = redis::Client::build_with_tls(
        format!("rediss://localhost:{port}"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&ca.cert).unwrap()),
        },
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(
        documents::redis_hashes(&mut conn, prefix).await,
        documents::card_hashes(&oracle, prefix)
    );
}
