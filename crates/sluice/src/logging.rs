//! Log set-up for the command line: stderr, `RUST_LOG` over the command's
//! default level, colour only on a terminal, JSON on request.

use std::io::IsTerminal;

use crate::cli::LogFormat;

/// Logs to stderr; `RUST_LOG` overrides the default level. Text carries
/// colour codes only when stderr is a terminal, so a log file or a pipe
/// gets plain lines.
pub fn init(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}
