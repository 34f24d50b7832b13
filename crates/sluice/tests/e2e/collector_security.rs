//! The collector lets in only who it should, over real HTTPS, and keeps
//! answering while clients misbehave. One pipeline, three collectors:
//!
//! * `web`: HTTPS, bearer tokens from the environment and from a file,
//!   CORS for one origin. Requests without a valid token are refused; the
//!   token file is rewritten (the old token stops working, the new one
//!   works); the certificate files are replaced by one from another
//!   authority (new connections get the new certificate, no restart);
//!   plain HTTP and TLS garbage on its port leave it serving.
//! * `hooks`: webhook signatures (HMAC-SHA256, GitHub's header), computed
//!   here by the `openssl` command.
//! * `open`: no auth, 2 s header and body timeouts, a rate limit of three
//!   requests: a slow-loris head is cut, a stalled body gets 408, a 1 MiB
//!   header gets 431, the fourth request 429.
//!
//! The lake then holds exactly the events of the requests answered 200,
//! the refusals are counted in `/metrics` (served over TLS too), and the
//! debug log holds none of the tokens or the secret.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use sluice_testkit::{
    process::{Running, free_port},
    tls,
};

use crate::support;

const TOKEN_ENV: &str = "tok-env-5d1c9e";
const TOKEN_A: &str = "tok-file-a-71b2";
const TOKEN_B: &str = "tok-file-b-0e4f";
const HOOK_SECRET: &str = "hook-secret-c3a8";

fn client(ca: &Path) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([root])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `openssl dgst -sha256 -hmac SECRET` of `body`, as GitHub writes it.
fn signature(secret: &str, body: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256={}", text.split_whitespace().last().unwrap())
}

/// Sends raw bytes on a new connection and reads until the server closes
/// it or `wait` passes; returns what came back and how long it took.
fn raw_exchange(port: u16, head: &[u8], wait: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    // A server that refuses the request may close before reading it all.
    let _ = s.write_all(head);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

fn body_of(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn metric(scrape: &str, name: &str, labels: &str) -> f64 {
    scrape
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && labels.split(',').all(|kv| l.contains(kv)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_stores_only_what_authenticated_clients_send_and_outlasts_hostile_ones() {
    let tmp = sluice_testkit::tempdir().unwrap();
    let dir = tmp.path();
    let (lines, _) = support::generate_clean(dir, 30, 41);
    let ca1 = tls::authority(dir, "ca1");
    let first = tls::server_cert(dir, &ca1, "first");
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::copy(&first.cert, &cert_file).unwrap();
    std::fs::copy(&first.key, &key_file).unwrap();
    let tokens_file = dir.join("tokens");
    std::fs::write(&tokens_file, format!("# collector tokens\n{TOKEN_A}\n")).unwrap();

    let (api, web, hooks, open) = (free_port(), free_port(), free_port(), free_port());
    let tls_keys = format!("tls = {{ cert_file = {cert_file:?}, key_file = {key_file:?} }}");
    let pipeline = format!(
        r#"
[api]
address = "127.0.0.1:{api}"
{tls_keys}

[sources.web]
type = "http"
address = "127.0.0.1:{web}"
{tls_keys}
cors = {{ allowed_origins = ["https://shop.example"] }}
auth = {{ bearer_tokens_env = "WEB_TOKENS", bearer_tokens_file = {tokens_file:?} }}

[sources.hooks]
type = "http"
address = "127.0.0.1:{hooks}"
auth = {{ hmac = {{ secret_env = "HOOK_SECRET", header = "X-Hub-Signature-256" }} }}

[sources.open]
type = "http"
address = "127.0.0.1:{open}"
header_timeout_secs = 2
body_timeout_secs = 2
rate_limit = {{ requests_per_sec = 0.01, burst = 3 }}

[transforms.standardize]
type = "validate"
inputs = ["web", "hooks", "open"]
schema = "{schema}"
event_id = "/event_id"
event_time = "/ts"

[sinks.lake]
type = "lake"
inputs = ["standardize"]
uri = "lake/t"
flush_interval_secs = 1
"#,
        schema = support::schema_path().display()
    );
    std::fs::write(dir.join("pipeline.toml"), pipeline).unwrap();
    let log = std::fs::File::create(dir.join("sluice.log")).unwrap();
    let child = Command::new(support::SLUICE)
        .arg("run")
        .arg(dir.join("pipeline.toml"))
        .env("WEB_TOKENS", format!("unused-1, {TOKEN_ENV}"))
        .env("HOOK_SECRET", HOOK_SECRET)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let sluice = Running { child };

    let trusts_ca1 = client(&ca1.cert);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = trusts_ca1.get(format!("https://127.0.0.1:{api}/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "sluice did not become ready over TLS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut stored: Vec<&String> = Vec::new();
    let web_url = format!("https://127.0.0.1:{web}/v1/events");
    let post_web = |client: &reqwest::Client, auth: Option<&str>, part: &[String]| {
        let mut request = client.post(&web_url).body(body_of(part));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        request.send()
    };

    // Without a valid bearer token: 401, nothing stored.
    let r = post_web(&trusts_ca1, None, &lines[0..2]).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    for auth in ["Bearer tok-file-a-71b", "Basic dG9rOnRvaw=="] {
        let r = post_web(&trusts_ca1, Some(auth), &lines[0..2]).await.unwrap();
        assert_eq!(r.status(), 401, "{auth}");
    }
    // With a token from the file, then one from the environment: stored.
    let r = post_web(&trusts_ca1, Some(&format!("Bearer {TOKEN_A}")), &lines[0..5])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{\"accepted\":5}");
    stored.extend(&lines[0..5]);
    let r = post_web(&trusts_ca1, Some(&format!("bearer {TOKEN_ENV}")), &lines[5..8])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stored.extend(&lines[5..8]);

    // Plain HTTP and TLS garbage on the HTTPS port fail alone.
    let plain = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{web}/v1/events"))
        .header("Authorization", format!("Bearer {TOKEN_A}"))
        .body(body_of(&lines[8..10]))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP on the TLS port got {plain:?}");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let (_, took) = raw_exchange(web, &garbage, Duration::from_secs(15));
    assert!(took < Duration::from_secs(12), "garbage held the connection {took:?}");
    let r = post_web(&trusts_ca1, Some(&format!("Bearer {TOKEN_A}")), &lines[10..12])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stored.extend(&lines[10..12]);

    // CORS: the listed origin gets a preflight answer, another does not.
    for (origin, allowed) in [("https://shop.example", true), ("https://evil.example", false)] {
        let r = trusts_ca1
            .request(reqwest::Method::OPTIONS, &web_url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
            .await
            .unwrap();
        let allow_origin = r.headers().get("access-control-allow-origin").cloned();
        if allowed {
            assert_eq!(r.status(), 200);
            assert_eq!(allow_origin.unwrap(), origin);
            let headers = r.headers()["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(headers.contains("authorization"), "{headers}");
        } else {
            assert!(allow_origin.is_none(), "{origin} was allowed");
        }
    }

    // Rotation: the token file is rewritten; the old token stops working.
    std::fs::write(&tokens_file, format!("{TOKEN_B}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = post_web(&trusts_ca1, Some(&format!("Bearer {TOKEN_A}")), &lines[12..14])
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post_web(&trusts_ca1, Some(&format!("Bearer {TOKEN_B}")), &lines[14..16])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stored.extend(&lines[14..16]);

    // A renewed certificate from another authority is served without a restart.
    let ca2 = tls::authority(dir, "ca2");
    let renewed = tls::server_cert(dir, &ca2, "renewed");
    std::fs::copy(&renewed.cert, &cert_file).unwrap();
    std::fs::copy(&renewed.key, &key_file).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let trusts_ca2 = client(&ca2.cert);
    let r = post_web(&trusts_ca2, Some(&format!("Bearer {TOKEN_B}")), &lines[16..18])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stored.extend(&lines[16..18]);
    assert!(
        client(&ca1.cert).post(&web_url).send().await.is_err(),
        "the old certificate is still served"
    );

    // Webhook signatures over the body as sent.
    let hooks_url = format!("http://127.0.0.1:{hooks}/v1/events");
    let signed = body_of(&lines[18..20]);
    let http = reqwest::Client::new();
    let r = http
        .post(&hooks_url)
        .header("X-Hub-Signature-256", signature(HOOK_SECRET, signed.as_bytes()))
        .body(signed.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    stored.extend(&lines[18..20]);
    let other = body_of(&lines[20..22]);
    for header in [
        Some(signature("not-the-secret", other.as_bytes())),
        Some(signature(HOOK_SECRET, signed.as_bytes())),
        None,
    ] {
        let mut request = http.post(&hooks_url).body(other.clone());
        if let Some(h) = &header {
            request = request.header("X-Hub-Signature-256", h);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{header:?}");
    }

    // Slow and oversized clients on `open`, while others are served.
    let open_url = format!("http://127.0.0.1:{open}/v1/events");
    let slow_head = std::thread::spawn(move || {
        raw_exchange(
            open,
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Le",
            Duration::from_secs(8),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = http.post(&open_url).body(body_of(&lines[22..24])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    stored.extend(&lines[22..24]);
    let (answer, took) = slow_head.join().unwrap();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(7),
        "a slow head was held {took:?} ({answer:?})"
    );
    let stalled = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{}",
        &lines[24][..10]
    );
    let (answer, took) =
        tokio::task::spawn_blocking(move || raw_exchange(open, stalled.as_bytes(), Duration::from_secs(8)))
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(took < Duration::from_secs(7), "{took:?}");
    let huge = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "p".repeat(1 << 20)
    );
    let (answer, _) = tokio::task::spawn_blocking(move || raw_exchange(open, huge.as_bytes(), Duration::from_secs(8)))
        .await
        .unwrap();
    // 431, unless the server's close (with the rest of the header unread)
    // reset the connection before the answer was read.
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    let r = http.post(&open_url).body(body_of(&lines[24..26])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    stored.extend(&lines[24..26]);
    let r = http.post(&open_url).body(body_of(&lines[26..28])).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=100).contains(&retry_after), "Retry-After {retry_after}");

    let scrape = trusts_ca2
        .get(format!("https://127.0.0.1:{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused = |source: &str, reason: &str| {
        metric(
            &scrape,
            "sluice_http_refused_total",
            &format!("component=\"{source}\",reason=\"{reason}\""),
        )
    };
    assert_eq!(refused("web", "unauthorized"), 4.0);
    assert_eq!(refused("hooks", "unauthorized"), 3.0);
    assert_eq!(refused("open", "body_timeout"), 1.0);
    assert_eq!(refused("open", "rate_limited"), 1.0);
    support::assert_metrics_catalogued(&scrape);
    sluice.stop();

    let lake = support::read_lake(&dir.join("lake/t")).await;
    let expected = support::event_ids(&stored);
    assert_eq!(lake.ids, expected);
    assert_eq!(lake.rows, expected.len() as u64);

    let log = std::fs::read_to_string(dir.join("sluice.log")).unwrap();
    assert!(log.contains("TLS certificate reloaded") && log.contains("collector tokens reloaded"));
    for secret in [TOKEN_ENV, TOKEN_A, TOKEN_B, HOOK_SECRET] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
}
