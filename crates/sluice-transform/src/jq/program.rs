//! A compiled jq program (jaq on [`JqVal`], with its standard library and
//! what jq has that jaq lacks, `jq_defs.jq`) and its run on one event's JSON: every
//! value it emits must be a JSON object; the outputs of one event may not
//! add up to more than the output limit.
//!
//! jaq recurses over the depth of programs and values (printing, comparing,
//! merging and dropping a 10 000-deep array), far past a worker thread's
//! 2 MiB stack, and a stack overflow aborts the process: compiling and
//! running happen on a thread with a large stack ([`on_stack`]), in a
//! worker process when the binary serves them ([`super::worker`]).

use std::{collections::BTreeSet, sync::OnceLock};

use bytes::Bytes;
use jaq_core::{
    Compiler, Ctx, Vars, data,
    load::{Arena, File, Loader},
    unwrap_valr,
};
use sluice_core::reason;

use super::{
    limits::{JqLimits, Limit},
    syntax,
    value::{self, JqVal},
    wire::Answer,
};

type Filter = jaq_core::Filter<data::JustLut<JqVal>>;

/// Runs `work` on a thread with a `stack`-byte stack (reserved, not
/// committed: only what a program uses is touched) and waits for it; an
/// error if the thread cannot start or `work` panics.
pub fn on_stack<T: Send>(stack: usize, work: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sluice-jq".into())
            .stack_size(stack)
            .spawn_scoped(scope, work)
            .map_err(|e| format!("cannot start a jq thread: {e}"))?
            .join()
            .map_err(|_| "the program panicked".to_string())
    })
}

pub struct Program {
    filter: Filter,
}

impl Program {
    /// Compiles `program` on this thread; the error names the line and
    /// column of each problem (in the program as [`syntax`]
    /// rewrote it, if it has `?//`).
    pub fn compile(program: &str) -> Result<Self, String> {
        let program = &syntax::rewrite(program)?;
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .chain(sluice_defs())
            .chain(builtins_def());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(value::funs());
        let arena = Arena::default();
        let loader = Loader::new(defs);
        let modules = loader
            .load(
                &arena,
                File {
                    code: program,
                    path: (),
                },
            )
            .map_err(|errors| load_errors(program, errors))?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|errors| {
            let mut messages = Vec::new();
            for (_, undefined) in errors {
                for (name, kind) in undefined {
                    messages.push(format!(
                        "{}: undefined {} {name}",
                        position(program, name),
                        kind.as_str()
                    ));
                }
            }
            messages.join("; ")
        })?;
        Ok(Program { filter })
    }

    /// Runs the program on one event's JSON, on this thread: the outputs'
    /// JSON texts, or the reason and detail of a refusal.
    pub fn run(&self, payload: &[u8], limits: &JqLimits) -> Answer {
        let input = JqVal::parse(payload).map_err(|e| (reason::INVALID_JSON.to_string(), e))?;
        let ctx = Ctx::<data::JustLut<JqVal>>::new(&self.filter.lut, Vars::new([]));
        let mut out = Vec::new();
        let mut emitted = 0;
        for value in self.filter.id.run((ctx, input)).map(unwrap_valr) {
            let value = value
                .map_err(|e| (reason::JQ_ERROR.to_string(), value::error_message(e)))?
                .for_output();
            if !value.is_object() {
                return Err((
                    reason::JQ_OUTPUT.into(),
                    format!("the program emitted {}, not an object", shorten(&value.to_string())),
                ));
            }
            let text = value.to_string();
            emitted += text.len();
            if emitted > limits.output_bytes() {
                return Err(limits.refusal(Limit::Output));
            }
            out.push(Bytes::from(text));
        }
        Ok(out)
    }
}

/// What jq has and jaq lacks, written in jq (`jq_defs.jq`).
fn sluice_defs() -> impl Iterator<Item = jaq_core::load::parse::Def<&'static str>> {
    jaq_core::load::parse(include_str!("jq_defs.jq"), |p| p.defs())
        .expect("jq_defs.jq parses (checked by a test)")
        .into_iter()
}

/// jq's `builtins`: `name/arity` of each filter a program can call (but
/// those named `_...` and the `@` formats), in a definition made once.
fn builtins_def() -> impl Iterator<Item = jaq_core::load::parse::Def<&'static str>> {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .chain(sluice_defs())
            .map(|d| (d.name, d.args.len()));
        let funs = jaq_core::funs::<data::JustLut<JqVal>>()
            .chain(jaq_std::funs())
            .chain(value::funs())
            .map(|(name, args, _)| (name, args.len()));
        let names: BTreeSet<String> = defs
            .chain(funs)
            .chain([("builtins", 0)])
            .filter(|(name, _)| !name.starts_with(['_', '@']))
            .map(|(name, arity)| format!("{name}/{arity}"))
            .collect();
        let list = serde_json::to_string(&names).expect("strings serialise");
        format!("def builtins: {list};")
    });
    jaq_core::load::parse(text, |p| p.defs())
        .expect("the builtins definition parses")
        .into_iter()
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// `line L, column C` of `part`, a slice of `code`.
fn position(code: &str, part: &str) -> String {
    let offset = (part.as_ptr() as usize)
        .checked_sub(code.as_ptr() as usize)
        .filter(|o| *o <= code.len())
        .unwrap_or(0);
    let before = &code[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

fn load_errors(code: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut messages = Vec::new();
    for (_, error) in errors {
        match error {
            Error::Io(errs) => messages.extend(errs.into_iter().map(|(path, e)| format!("cannot load {path}: {e}"))),
            Error::Lex(errs) => messages.extend(
                errs.into_iter()
                    .map(|(expect, at)| format!("{}: expected {}", position(code, at), expect.as_str())),
            ),
            Error::Parse(errs) => messages.extend(errs.into_iter().map(|(expect, at)| {
                let found = if at.is_empty() {
                    "the end".to_string()
                } else {
                    format!("{at:?}")
                };
                format!("{}: expected {}, found {found}", position(code, at), expect.as_str())
            })),
        }
    }
    messages.join("; ")
}
