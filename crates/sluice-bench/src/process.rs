//! Running a command to completion with its wall time, CPU time (`wait4`'s
//! rusage) and peak resident memory (the kernel's `VmHWM`, sampled while it
//! runs: rusage's `ru_maxrss` starts from the spawning process's peak, so
//! it would report this bench's own memory for a smaller child), and
//! starting a long-running pipeline.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Measured {
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub peak_rss_mib: f64,
}

/// Runs `cmd` to completion; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Measured> {
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let (ok, measured) = wait(child, started)?;
    if !ok {
        bail!("{cmd:?} failed");
    }
    Ok(measured)
}

/// Waits for `child` (started at `started`); returns whether it exited 0.
pub fn wait(child: Child, started: Instant) -> Result<(bool, Measured)> {
    let pid = child.id() as libc::pid_t;
    let sampler = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Some(kib) = high_water_kib(pid) {
            peak_kib = peak_kib.max(kib);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak_kib
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, which
    // `Child` has not reaped (we never call its wait methods).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        bail!("wait4({pid}) failed: {}", std::io::Error::last_os_error());
    }
    let seconds = started.elapsed().as_secs_f64();
    let sampled_kib = sampler.join().unwrap_or(0);
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000).as_secs_f64();
    Ok((
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        Measured {
            seconds,
            cpu_seconds: time(usage.ru_utime) + time(usage.ru_stime),
            // ru_maxrss (KiB) only when sampling saw nothing: it starts
            // from this process's peak when the child was spawned, so a
            // large bench process would inflate every later child's.
            peak_rss_mib: if sampled_kib > 0 {
                sampled_kib
            } else {
                usage.ru_maxrss as u64
            } as f64
                / 1024.0,
        },
    ))
}

/// The peak resident set size of process `pid` (`VmHWM`), while it runs.
fn high_water_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts `sluice run pipeline.toml` in `dir` (log in `dir/sluice.log`) and
/// waits until its API on port `api` reports ready.
pub async fn start_pipeline(sluice: &Path, dir: &Path, api: u16) -> Result<Child> {
    let child = Command::new(sluice)
        .args(["run", "pipeline.toml"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("sluice.log"))?)
        .spawn()?;
    let ready = format!("http://127.0.0.1:{api}/ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) {
        if Instant::now() > deadline {
            terminate(&child);
            bail!("sluice did not become ready; see {}", dir.join("sluice.log").display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(child)
}

/// Sends SIGTERM to a running child.
pub fn terminate(child: &Child) {
    // SAFETY: signalling our own child by pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}
