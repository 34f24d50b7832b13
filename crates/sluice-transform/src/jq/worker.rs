//! The jq worker process: the binary itself, started by a `jq` transform
//! with [`WORKER_ENV`] set, compiling one program and running it on the
//! events the engine sends (the protocol is [`super::wire`]).
//!
//! A program can overflow any stack, allocate without bound or never end,
//! and none of that can be caught inside a process: an overflow or a failed
//! allocation aborts it. So the program runs here, in a process of its own
//! with its memory capped (`RLIMIT_DATA`) and its stack sized by the
//! limits; when it dies, the engine names the limit from what Rust printed
//! on stderr and goes on with a new worker ([`super::pool`]).
//!
//! Only a binary whose `main` calls [`serve_or_enable_workers`] first can
//! be a worker; elsewhere (unit tests, other embedders) programs run in
//! the calling process, with the output limit only.

use std::{
    io::{self, BufReader, BufWriter, Write},
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use sluice_core::reason;

use super::{
    limits::JqLimits,
    program::Program,
    wire::{self, Header},
};

/// Set in a worker's environment to the engine's process id: the process
/// serves a program for that engine.
pub const WORKER_ENV: &str = "SLUICE_JQ_WORKER";

/// Memory a worker may use beyond its program's limit and stack: the
/// binary's own data and the allocator's arenas.
const BASE_BYTES: u64 = 64 << 20;

/// The longest a worker holds answers before sending them.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

static WORKER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Call first in `main` of a binary that runs `jq` transforms: in a worker
/// process started by one it serves and exits; elsewhere it lets `jq`
/// transforms run their programs in such workers (this binary, again).
pub fn serve_or_enable_workers() {
    if let Some(engine) = std::env::var_os(WORKER_ENV) {
        std::process::exit(serve(engine.to_str().and_then(|pid| pid.parse().ok())));
    }
    // The running binary even after it was replaced on disk (an upgrade).
    let exe = if cfg!(target_os = "linux") {
        Some(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe().ok()
    };
    if let Some(exe) = exe {
        let _ = WORKER_EXE.set(exe);
    }
}

/// The binary to start workers from, if this one serves them.
pub fn worker_exe() -> Option<&'static Path> {
    WORKER_EXE.get().map(PathBuf::as_path)
}

/// The worker's life: the header, the program compiled (or refused), then
/// one answer per event until the engine (process `engine`) closes stdin.
/// The exit code is 0, or 2 when the engine spoke no protocol.
fn serve(engine: Option<u32>) -> i32 {
    detach_from_engine_signals(engine);
    let mut input = BufReader::with_capacity(256 << 10, io::stdin());
    let header: Header = match wire::read_frame(&mut input) {
        Ok(Some(frame)) => match serde_json::from_slice(&frame) {
            Ok(header) => header,
            Err(_) => return 2,
        },
        _ => return 2,
    };
    cap_memory(&header.limits);
    let served = std::thread::Builder::new()
        .name("sluice-jq".into())
        .stack_size(header.limits.stack_bytes())
        .spawn(move || serve_events(input, header))
        .map(|thread| thread.join());
    match served {
        Ok(Ok(Ok(()))) => 0,
        _ => 1,
    }
}

fn serve_events(mut input: BufReader<io::Stdin>, header: Header) -> io::Result<()> {
    let mut output = BufWriter::new(io::stdout().lock());
    let program = Program::compile(&header.program);
    let compiled = match &program {
        Ok(_) => Ok(Vec::new()),
        Err(why) => Err(("compile".to_string(), why.clone())),
    };
    wire::write_answer(&mut output, &compiled)?;
    output.flush()?;
    let Ok(program) = program else { return Ok(()) };
    let cadence = (header.limits.time() / 4).min(FLUSH_EVERY);
    let mut flushed = Instant::now();
    while let Some(event) = wire::read_frame(&mut input)? {
        let answer = std::panic::catch_unwind(AssertUnwindSafe(|| program.run(&event, &header.limits)))
            .unwrap_or_else(|_| Err((reason::JQ_ERROR.to_string(), "the program panicked".to_string())));
        wire::write_answer(&mut output, &answer)?;
        // Answers go out when all that was read is answered (at once for
        // an event sent alone), and at least every `cadence`, so events
        // that take their time do not hold earlier answers past the limit.
        if input.buffer().is_empty() || flushed.elapsed() >= cadence {
            output.flush()?;
            flushed = Instant::now();
        }
    }
    Ok(())
}

/// A worker ends with its engine, and a Ctrl-C meant for the engine does
/// not fail the event its worker is running.
fn detach_from_engine_signals(engine: Option<u32>) {
    // SAFETY: plain libc calls with constant arguments, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    // The engine died before the line above (the worker was handed to
    // another parent): nobody is reading. Not `parent_id() == 1`: in a
    // container the engine itself may be process 1.
    if engine != Some(std::os::unix::process::parent_id()) {
        std::process::exit(1);
    }
}

/// Caps the process's data (heap, anonymous maps and the program's stack)
/// at the memory limit plus the stack plus [`BASE_BYTES`]; an allocation
/// past it fails, and Rust aborts with `memory allocation of N bytes failed`.
fn cap_memory(limits: &JqLimits) {
    let bytes = (limits.memory_mib << 20) + limits.stack_bytes() as u64 + BASE_BYTES;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads the struct it is given; a failure leaves the process uncapped.
    unsafe {
        libc::setrlimit(libc::RLIMIT_DATA, &limit);
    }
}
