//! TLS to the backends, against real servers: the machine's PostgreSQL
//! (which serves TLS with its own certificate for `localhost`) with
//! `sslmode=verify-full`, and a NATS server this test starts with TLS on a
//! certificate of a test authority, trusted through `NATS_CA` as the
//! `nats` command reads it. The lines land in both; without the CA the run
//! ends at once with the reason instead of waiting; a wrong `sslmode` is a
//! config error naming the key.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sluice_testkit::{services::Service, tls};

use crate::{
    postgres::{connect, drop_schema, fresh_schema, one_i64},
    support,
};

/// `nats-server` with JetStream and TLS on a free port; killed on drop.
struct TlsNats {
    child: Child,
    port: u16,
}

impl TlsNats {
    fn start(dir: &std::path::Path, cert: &tls::ServerCert) -> TlsNats {
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        TlsNats { child, port }
    }
}

impl Drop for TlsNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let nats = TlsNats::start(dir, &tls::server_cert(dir, &ca, "nats"));

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
            port = nats.port
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
        .connect(format!("tls://localhost:{}", nats.port))
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
