//! A jq program's per-event budgets (`limits` of a `jq` transform) and
//! what going past each is called. The worker process enforces memory and
//! stack (its own address space), output (it counts), and the engine time
//! (it stops waiting and kills the worker); see [`super::pool`].

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::reason;

/// `[transforms.NAME.limits]`: what one event may cost the program.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JqLimits {
    /// Milliseconds the program may run on one event (1 to 3 600 000).
    pub time_ms: u64,
    /// MiB the program may allocate, beyond its stack (16 to 65 536).
    pub memory_mib: u64,
    /// MiB of JSON one event's outputs may add up to (1 to 1 024).
    pub output_mib: u64,
    /// MiB of stack for the program's recursion, which grows with the
    /// nesting of values and of the program (1 to 4 096).
    pub stack_mib: u64,
}

impl Default for JqLimits {
    fn default() -> Self {
        JqLimits {
            time_ms: 1_000,
            memory_mib: 1_024,
            output_mib: 16,
            stack_mib: 256,
        }
    }
}

/// Which limit an event went past, for the reason `jq_limit:<limit>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Time,
    Memory,
    Output,
    Depth,
    /// The worker ended on the event without naming a limit.
    Crash,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Time => "time",
            Limit::Memory => "memory",
            Limit::Output => "output",
            Limit::Depth => "depth",
            Limit::Crash => "crash",
        }
    }
}

impl JqLimits {
    /// Each limit in its range; the error names the key and what is allowed.
    pub fn check(&self) -> Result<(), String> {
        let ranges = [
            ("time_ms", self.time_ms, 1, 3_600_000),
            ("memory_mib", self.memory_mib, 16, 65_536),
            ("output_mib", self.output_mib, 1, 1_024),
            ("stack_mib", self.stack_mib, 1, 4_096),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(format!(
                    "limits.{key}: {value} is out of range; allowed: {low} to {high}"
                ));
            }
        }
        Ok(())
    }

    pub fn time(&self) -> Duration {
        Duration::from_millis(self.time_ms)
    }

    pub fn output_bytes(&self) -> usize {
        (self.output_mib as usize) << 20
    }

    pub fn stack_bytes(&self) -> usize {
        (self.stack_mib as usize) << 20
    }

    /// The reason and detail of an event that went past `limit`.
    pub fn refusal(&self, limit: Limit) -> (String, String) {
        (format!("{}:{}", reason::JQ_LIMIT, limit.as_str()), self.detail(limit))
    }

    /// What an event that went past `limit` is told.
    pub fn detail(&self, limit: Limit) -> String {
        match limit {
            Limit::Time => format!("the program ran longer than {} ms (limits.time_ms)", self.time_ms),
            Limit::Memory => format!(
                "the program needed more than {} MiB (limits.memory_mib)",
                self.memory_mib
            ),
            Limit::Output => format!(
                "the program emitted more than {} MiB of JSON (limits.output_mib)",
                self.output_mib
            ),
            Limit::Depth => format!(
                "the program recursed deeper than its {} MiB stack allows (limits.stack_mib)",
                self.stack_mib
            ),
            Limit::Crash => "the jq worker process ended on this event twice without naming a limit".into(),
        }
    }
}
