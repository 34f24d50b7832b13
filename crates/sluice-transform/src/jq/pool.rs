//! The engine's side of jq worker processes ([`super::worker`]): a pool of
//! idle workers of one program, a batch's events streamed to one of them
//! while its answers are read, each answer awaited for at most the time
//! limit.
//!
//! When a worker stops answering (the time limit: it is killed) or ends (a
//! limit it hit, or a crash), the batch goes on in a new worker one event
//! at a time from the first unanswered event, until one stops a worker
//! alone: it gets `jq_limit:<limit>`, named from what the worker printed on
//! stderr, and the batch streams again from the next event. A worker that
//! ended without naming a limit may have been killed from outside: its
//! event is tried once more in a new worker, and dead-lettered
//! (`jq_limit:crash`) only if that one ends too. Invariant: every event of
//! a batch gets exactly one answer, in order, or the batch fails as
//! retriable (a worker could not start).

use std::{io, path::Path, process::Stdio, sync::Mutex, time::Duration};

use bytes::Bytes;
use sluice_core::{Event, StageError};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter},
    process::{Child, ChildStdin, ChildStdout, Command},
    task::JoinHandle,
};

use super::{
    limits::{JqLimits, Limit},
    wire::{self, Answer, Header},
    worker::WORKER_ENV,
};

/// How long a worker may take to compile its program.
const COMPILE_TIME: Duration = Duration::from_secs(10);

/// How much of a worker's stderr is kept to name why it ended.
const STDERR_TAIL: usize = 4096;

/// Idle workers of one program.
pub struct Pool {
    exe: &'static Path,
    header: Bytes,
    limits: JqLimits,
    idle: Mutex<Vec<Worker>>,
}

/// Why a worker could not be used.
pub enum Refused {
    /// The program does not compile: jq's message.
    Program(String),
    /// The worker could not start, or ended while compiling.
    Worker(String),
}

impl Pool {
    /// A pool of workers of `program` started from `exe`; the program is
    /// compiled once in a worker first, so a program that does not compile,
    /// or cannot within the limits, is refused here.
    pub fn start(exe: &'static Path, program: &str, limits: JqLimits) -> Result<Pool, Refused> {
        let header = serde_json::to_vec(&Header {
            program: program.to_string(),
            limits,
        })
        .map_err(|e| Refused::Worker(e.to_string()))?;
        let pool = Pool {
            exe,
            header: Bytes::from(header),
            limits,
            idle: Mutex::new(Vec::new()),
        };
        // A thread of its own: the caller may be inside a runtime or not.
        let checked = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| Refused::Worker(e.to_string()))?;
                    runtime.block_on(async {
                        pool.spawn().await?.close().await;
                        Ok(())
                    })
                })
                .join()
                .unwrap_or_else(|_| Err(Refused::Worker("the compile check panicked".into())))
        });
        checked.map(|()| pool)
    }

    /// Each event's answer, in order.
    ///
    /// A batch is streamed whole, and a worker flushes its answers only
    /// when it has read all it was sent, so when it stops, which of the
    /// unanswered events stopped it is not known: the batch then goes on
    /// one event at a time until an event is blamed, and streams again
    /// after it.
    pub async fn run(&self, events: &[Event]) -> Result<Vec<Answer>, StageError> {
        let mut answers = Vec::with_capacity(events.len());
        let mut one_at_a_time = false;
        let mut ended_once_at = None;
        while answers.len() < events.len() {
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut worker = match idle {
                Some(worker) => worker,
                None => self.spawn().await.map_err(|refused| {
                    let why = match refused {
                        Refused::Program(why) | Refused::Worker(why) => why,
                    };
                    StageError::retriable(format!("cannot start a jq worker: {why}"))
                })?,
            };
            let from = answers.len();
            let to = if one_at_a_time { from + 1 } else { events.len() };
            let Err(stop) = worker.run(&events[from..to], &mut answers, self.limits.time()).await else {
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
                continue;
            };
            let limit = worker.end(stop).await;
            let at = answers.len();
            if !one_at_a_time {
                one_at_a_time = true;
                continue;
            }
            match limit {
                Some(limit) => answers.push(Err(self.limits.refusal(limit))),
                None if ended_once_at == Some(at) => answers.push(Err(self.limits.refusal(Limit::Crash))),
                None => {
                    tracing::warn!("a jq worker ended without naming a limit; its event is tried once more");
                    ended_once_at = Some(at);
                    continue;
                }
            }
            one_at_a_time = false;
        }
        Ok(answers)
    }

    /// A new worker with the program compiled.
    async fn spawn(&self) -> Result<Worker, Refused> {
        let mut child = Command::new(self.exe)
            .env(WORKER_ENV, std::process::id().to_string())
            // Rust's own last words must fit the stderr tail: no backtraces.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Refused::Worker(format!("{}: {e}", self.exe.display())))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Refused::Worker("the worker's pipes are missing".into()));
        };
        let mut worker = Worker {
            child,
            stdin: Some(stdin),
            stdout: BufReader::with_capacity(64 << 10, stdout),
            stderr: tokio::spawn(tail(stderr)),
        };
        let mut compiled = Vec::new();
        match worker
            .exchange(vec![self.header.clone()], &mut compiled, COMPILE_TIME)
            .await
        {
            Ok(()) => match compiled.pop() {
                Some(Err((_, why))) => Err(Refused::Program(why)),
                _ => Ok(worker),
            },
            Err(stop) => {
                let why = match worker.end(stop).await {
                    Some(Limit::Time) => format!("compiling took longer than {} s", COMPILE_TIME.as_secs()),
                    Some(limit) => self.limits.detail(limit),
                    None => "the worker ended while compiling".into(),
                };
                Err(Refused::Program(format!(
                    "the program cannot be compiled within its limits: {why}"
                )))
            }
        }
    }
}

/// Why a worker stopped answering.
enum Stop {
    /// It did not answer within the time limit (it is killed).
    Time,
    /// Its pipe closed or carried no answer: it ended.
    Ended,
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Worker {
    /// Streams `events` to the worker and reads their answers.
    async fn run(&mut self, events: &[Event], answers: &mut Vec<Answer>, limit: Duration) -> Result<(), Stop> {
        let frames = events.iter().map(|e| e.payload.clone()).collect();
        self.exchange(frames, answers, limit).await
    }

    /// Writes `frames` (on a task of its own, so a full pipe never blocks
    /// the reading) and reads one answer per frame, each within `limit`.
    async fn exchange(&mut self, frames: Vec<Bytes>, answers: &mut Vec<Answer>, limit: Duration) -> Result<(), Stop> {
        let stdin = self.stdin.take().ok_or(Stop::Ended)?;
        let count = frames.len();
        let writer = tokio::spawn(async move {
            let mut out = BufWriter::with_capacity(64 << 10, stdin);
            for frame in frames {
                out.write_all(&(frame.len() as u32).to_le_bytes()).await?;
                out.write_all(&frame).await?;
            }
            out.flush().await?;
            Ok::<_, io::Error>(out.into_inner())
        });
        let mut read = Ok(());
        for _ in 0..count {
            match tokio::time::timeout(limit, wire::read_answer(&mut self.stdout)).await {
                Ok(Ok(answer)) => answers.push(answer),
                Ok(Err(_)) => read = Err(Stop::Ended),
                Err(_) => read = Err(Stop::Time),
            }
            if read.is_err() {
                // A stuck worker would keep the writer blocked on a full pipe.
                let _ = self.child.start_kill();
                break;
            }
        }
        match writer.await {
            Ok(Ok(stdin)) => self.stdin = Some(stdin),
            _ if read.is_ok() => read = Err(Stop::Ended),
            _ => {}
        }
        read
    }

    /// Lets the worker end (its stdin closed) and reaps it.
    async fn close(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(1), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Ends the worker; the limit it went past, if it named one.
    async fn end(mut self, stop: Stop) -> Option<Limit> {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        if let Stop::Time = stop {
            return Some(Limit::Time);
        }
        let stderr = tokio::time::timeout(Duration::from_secs(1), &mut self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        named_limit(&String::from_utf8_lossy(&stderr))
    }
}

/// The limit a worker's last words name: Rust prints these before it aborts.
fn named_limit(stderr: &str) -> Option<Limit> {
    if stderr.contains("has overflowed its stack") {
        Some(Limit::Depth)
    } else if stderr.contains("memory allocation of") {
        Some(Limit::Memory)
    } else {
        None
    }
}

/// The last [`STDERR_TAIL`] bytes a worker writes to stderr (read all the
/// time, so the worker never blocks on it).
async fn tail(mut stderr: tokio::process::ChildStderr) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0; 1024];
    while let Ok(n @ 1..) = stderr.read(&mut chunk).await {
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > STDERR_TAIL {
            kept.drain(..kept.len() - STDERR_TAIL);
        }
    }
    kept
}
