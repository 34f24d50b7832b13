//! A `sluice` process under test: started with a pipeline, waited on until
//! ready, stopped with SIGTERM (must exit cleanly) or SIGKILL; killed when
//! dropped. Plus the small blocking helpers the harness needs.

use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running `sluice run` process.
pub struct Running {
    pub child: Child,
}

impl Running {
    /// `binary run <pipeline> <extra...>` with extra environment variables.
    pub fn start(binary: &str, pipeline: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let child = Command::new(binary)
            .arg("run")
            .arg(pipeline)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        Running { child }
    }

    /// Waits until `/ready` on the API port answers 200 (at most 60 s).
    pub fn wait_ready(&mut self, api_port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "sluice exited during start-up"
            );
            if http_get(api_port, "/ready").is_some_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sluice did not become ready");
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "sluice exited with {status}");
    }

    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    fn signal(&self, name: &str) {
        run_ok(
            Command::new("kill")
                .arg(format!("-{name}"))
                .arg(self.child.id().to_string()),
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command that must succeed; returns its standard output.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A minimal blocking HTTP/1.1 GET on 127.0.0.1; returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Python with `deltalake`, `pyarrow` and `fastavro` (`SLUICE_PYTHON`, set by
/// `scripts/test`).
pub fn python() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into())
}
