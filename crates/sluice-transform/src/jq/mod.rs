//! The `jq` transform: a jq program run on each event. Every value the
//! program emits becomes an event (none drops it, several fan it out); an
//! error, an output that is not a JSON object, or going past one of the
//! per-event [`JqLimits`] sends the input event to the dead-letter store
//! with the reason. The program is compiled when the transform is built;
//! compile errors name line and column.
//!
//! Where the binary serves workers ([`serve_or_enable_workers`]), the
//! program runs in worker processes ([`pool`], [`worker`]), so no program
//! or event can crash or exhaust the engine: time, memory, output and
//! stack are all bounded per event. Elsewhere it runs in-process on a
//! large stack ([`program`]) with only the output limit.

mod limits;
mod pool;
mod program;
mod syntax;
mod value;
mod wire;
mod worker;

use async_trait::async_trait;
use sluice_core::{BatchInfo, Event, Rejected, StageError, Transform, TransformOutput, reason};

pub use limits::{JqLimits, Limit};
pub use program::Program;
pub use worker::serve_or_enable_workers;

use self::{pool::Pool, wire::Answer, worker::worker_exe};

pub struct JqTransform {
    runner: Runner,
}

enum Runner {
    Workers(Pool),
    InProcess(Program, JqLimits),
}

impl JqTransform {
    /// Compiles `program` (in a worker, where the binary serves them); the
    /// error names the limit or the line and column of each problem.
    pub fn new(program: &str, limits: JqLimits) -> Result<Self, String> {
        limits.check()?;
        let runner = match worker_exe() {
            Some(exe) => Runner::Workers(Pool::start(exe, program, limits).map_err(|refused| match refused {
                pool::Refused::Program(why) => why,
                pool::Refused::Worker(why) => format!("cannot start a jq worker: {why}"),
            })?),
            None => return Self::in_process(program, limits),
        };
        Ok(JqTransform { runner })
    }

    /// Compiles `program` to run in this process (on a thread with the
    /// limits' stack), bounded by the output limit only.
    pub fn in_process(program: &str, limits: JqLimits) -> Result<Self, String> {
        limits.check()?;
        let compiled = program::on_stack(limits.stack_bytes(), || Program::compile(program)).and_then(|p| p)?;
        Ok(JqTransform {
            runner: Runner::InProcess(compiled, limits),
        })
    }

    async fn answers(&self, events: &[Event]) -> Result<Vec<Answer>, StageError> {
        let (program, limits) = match &self.runner {
            Runner::Workers(pool) => return pool.run(events).await,
            Runner::InProcess(program, limits) => (program, limits),
        };
        let stack = limits.stack_bytes();
        Ok(
            match program::on_stack(stack, || {
                events.iter().map(|e| program.run(&e.payload, limits)).collect()
            }) {
                Ok(answers) => answers,
                // A panic: run the events one by one to fail only the one that panics.
                Err(_) => events
                    .iter()
                    .map(|e| {
                        program::on_stack(stack, || program.run(&e.payload, limits))
                            .unwrap_or_else(|why| Err((reason::JQ_ERROR.to_string(), why)))
                    })
                    .collect(),
            },
        )
    }
}

#[async_trait]
impl Transform for JqTransform {
    async fn process(&self, _batch: BatchInfo<'_>, events: Vec<Event>) -> Result<TransformOutput, StageError> {
        let answers = self.answers(&events).await?;
        let mut output = TransformOutput::default();
        for (event, answer) in events.into_iter().zip(answers) {
            match answer {
                Ok(outs) if outs.is_empty() => output.dropped += 1,
                Ok(outs) => output.events.extend(outs.into_iter().map(|payload| Event {
                    payload,
                    ..event.clone()
                })),
                Err((reason, detail)) => output.rejected.push(Rejected::new(event, reason, detail)),
            }
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests;
