//! jq's arithmetic on [`JqVal`]: operators with jq's errors and special
//! cases, integers past 2^53 as doubles, and numbers printed as jq prints
//! them.

use std::ops;

use jaq_core::ValR;
use jaq_json::{Num, Val};
use jaq_std::ValT as _;

use super::{JqVal, MAX_DEPTH, describe, fail, lift_r, unwrap_or_clone};

/// jq's arithmetic: jaq's, with jq's error texts, division by zero an
/// error, and a string times a number repeated.
fn arithmetic(op: Op, l: JqVal, r: JqVal) -> ValR<JqVal> {
    use Val::{Arr, BStr, Null, Num, Obj, TStr};
    let refuse = |l: &Val, r: &Val, because: &str| {
        Err(fail(format_args!(
            "{} and {} cannot be {}{because}",
            describe(l),
            describe(r),
            op.verb()
        )))
    };
    let zero = |v: &Val| {
        v.as_f64()
            .is_some_and(|f| if op == Op::Rem { f.trunc() == 0.0 } else { f == 0.0 })
    };
    match (op, &l.0, &r.0) {
        (Op::Add, Null, _) | (Op::Add, _, Null) => lift_r(l.0 + r.0),
        (Op::Add | Op::Sub | Op::Mul, Num(a), Num(b)) if beyond_doubles(a) || beyond_doubles(b) => {
            Ok(as_doubles(op, &l.0, &r.0))
        }
        (Op::Add | Op::Sub | Op::Mul, Num(_), Num(_)) => {
            let exact = lift_r(op.apply(l.0.clone(), r.0.clone()))?;
            Ok(match &exact.0 {
                Num(n) if beyond_doubles(n) => as_doubles(op, &l.0, &r.0),
                _ => exact,
            })
        }
        (Op::Add, TStr(_), TStr(_))
        | (Op::Add, BStr(_), BStr(_))
        | (Op::Add, Arr(_), Arr(_))
        | (Op::Add, Obj(_), Obj(_)) => lift_r(l.0 + r.0),
        (Op::Sub, Arr(_), Arr(_)) => lift_r(l.0 - r.0),
        (Op::Mul, Obj(_), Obj(_)) if merge_too_deep(&l.0, &r.0, 0) => Err(fail("Object merge too deep")),
        (Op::Mul, Obj(_), Obj(_)) => lift_r(l.0 * r.0),
        (Op::Mul, TStr(s), Num(_)) => repeat(s, &r.0),
        (Op::Mul, Num(_), TStr(s)) => repeat(s, &l.0),
        (Op::Rem, Num(_), Num(_)) if is_nan(&l.0) || is_nan(&r.0) => Ok(JqVal::from(f64::NAN)),
        (Op::Div | Op::Rem, Num(_), Num(_)) if zero(&r.0) => refuse(&l.0, &r.0, " because the divisor is zero"),
        (Op::Rem, Num(_), Num(_)) => Ok(JqVal::from(remainder(&l.0, &r.0) as isize)),
        (Op::Div, Num(_), Num(_)) | (Op::Div, TStr(_), TStr(_)) => lift_r(l.0 / r.0),
        (_, l, r) => refuse(l, r, ""),
    }
}

/// 2^53: every integer up to it is exact as a double.
const EXACT_IN_DOUBLES: usize = 1 << 53;

/// An integer jq could not compute on exactly: jq computes with doubles,
/// so past 2^53 Sluice does too (a literal keeps its digits until then).
fn beyond_doubles(n: &Num) -> bool {
    match n {
        Num::Int(i) => i.unsigned_abs() > EXACT_IN_DOUBLES,
        Num::BigInt(_) => true,
        Num::Float(_) | Num::Dec(_) => false,
    }
}

/// `l op r` on the numbers as doubles, as jq computes it.
fn as_doubles(op: Op, l: &Val, r: &Val) -> JqVal {
    let (l, r) = (l.as_f64().unwrap_or(f64::NAN), r.as_f64().unwrap_or(f64::NAN));
    JqVal::from(match op {
        Op::Add => l + r,
        Op::Sub => l - r,
        Op::Mul => l * r,
        Op::Div => l / r,
        Op::Rem => l % r,
    })
}

pub(super) fn is_nan(v: &Val) -> bool {
    v.as_f64().is_some_and(f64::is_nan)
}

/// A number as jq's remainder takes it: cut to a 64-bit integer
/// (saturating; NaN is 0).
fn as_integer(v: &Val) -> i64 {
    v.as_isize()
        .map_or_else(|| v.as_f64().unwrap_or_default() as i64, |i| i as i64)
}

/// jq's `a % b` of two numbers, `b` not 0: on the numbers cut to integers.
fn remainder(a: &Val, b: &Val) -> i64 {
    as_integer(a).wrapping_rem(as_integer(b))
}

/// jq's `"s" * n`: `s` repeated `n` times (rounded down), null for a
/// negative or NaN `n`.
fn repeat(s: &[u8], n: &Val) -> ValR<JqVal> {
    let n = n.as_f64().unwrap_or(f64::NAN);
    if n.is_nan() || n < 0.0 {
        return Ok(JqVal(Val::Null));
    }
    let times = n.floor().min(i32::MAX as f64) as usize;
    if s.len().saturating_mul(times) > i32::MAX as usize {
        return Err(fail("Repeat string result too long"));
    }
    Ok(JqVal(Val::utf8_str(s.repeat(times))))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl Op {
    /// jaq's answer.
    fn apply(self, l: Val, r: Val) -> ValR<Val> {
        match self {
            Op::Add => l + r,
            Op::Sub => l - r,
            Op::Mul => l * r,
            Op::Div => l / r,
            Op::Rem => l % r,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Op::Add => "added",
            Op::Sub => "subtracted",
            Op::Mul => "multiplied",
            Op::Div => "divided",
            Op::Rem => "divided (remainder)",
        }
    }
}

macro_rules! arithmetic_op {
    ($($trait:ident $method:ident $op:ident),*) => {$(
        impl ops::$trait for JqVal {
            type Output = ValR<JqVal>;
            fn $method(self, rhs: Self) -> ValR<JqVal> {
                arithmetic(Op::$op, self, rhs)
            }
        }
    )*};
}

arithmetic_op!(Add add Add, Sub sub Sub, Mul mul Mul, Div div Div, Rem rem Rem);

impl ops::Neg for JqVal {
    type Output = ValR<JqVal>;
    fn neg(self) -> ValR<JqVal> {
        match self.0 {
            // A literal keeps its digits (`-1E+1000`, `-0.1234567890123456789`).
            Val::Num(Num::Dec(d)) => Ok(JqVal(Val::Num(Num::Dec(jaq_json::Rc::new(
                match d.strip_prefix('-') {
                    Some(positive) => positive.to_string(),
                    None => format!("-{d}"),
                },
            ))))),
            v @ Val::Num(_) => lift_r(-v),
            v => Err(fail(format_args!("{} cannot be negated", describe(&v)))),
        }
    }
}

/// A float that jq prints otherwise than jaq: whole, not -0, below 10^17
/// (jq prints 17 significant digits) as an integer, NaN as null, an
/// infinity as the largest double.
fn is_whole(v: &Val) -> bool {
    match v {
        Val::Num(Num::Float(f)) => {
            !f.is_finite() || (f.fract() == 0.0 && f.abs() < WHOLE_LIMIT && !(*f == 0.0 && f.is_sign_negative()))
        }
        Val::Arr(a) => a.iter().any(is_whole),
        Val::Obj(o) => o.values().any(is_whole),
        _ => false,
    }
}

const WHOLE_LIMIT: f64 = 1e17;

/// `v` with every float [`is_whole`] names as jq prints it; containers
/// without one are kept as they are.
pub(super) fn whole_numbers(v: Val) -> Val {
    if !is_whole(&v) {
        return v;
    }
    match v {
        Val::Num(Num::Float(f)) if f.is_nan() => Val::Null,
        Val::Num(Num::Float(f)) if f.is_infinite() => Val::from(f64::MAX.copysign(f)),
        Val::Num(Num::Float(f)) => Val::from(f as isize),
        Val::Arr(a) => unwrap_or_clone(a).into_iter().map(whole_numbers).collect(),
        Val::Obj(o) => Val::obj(
            unwrap_or_clone(o)
                .into_iter()
                .map(|(k, x)| (k, whole_numbers(x)))
                .collect(),
        ),
        v => v,
    }
}

/// Whether merging `r` into `l` recursively goes past [`MAX_DEPTH`]
/// levels of objects both have.
fn merge_too_deep(l: &Val, r: &Val, depth: usize) -> bool {
    let (Val::Obj(l), Val::Obj(r)) = (l, r) else {
        return false;
    };
    depth > MAX_DEPTH
        || r.iter()
            .any(|(k, rv)| l.get(k).is_some_and(|lv| merge_too_deep(lv, rv, depth + 1)))
}
