//! The `sluice` binary: the command line with the built-in transforms.

use std::process::ExitCode;

fn main() -> ExitCode {
    sluice::Sluice::new().run()
}
