//! [`JqVal`]: jaq's JSON value with jq's semantics where jaq departs from
//! them on purpose.
//!
//! jaq refuses to update `null` at an index (its objects may have keys of
//! any type, so `null | .[0] = 1` could mean an array or an object) and
//! refuses to update an array past its end. jq creates what the path
//! needs: `null | .a.b = 1` is `{"a":{"b":1}}`, `null | .[2] = 1` is
//! `[null,null,1]`, `[1] | .[2] = 3` is `[1,null,3]`. jq programs people
//! bring rely on that (`.props.x = 1` on events without `props`), so the
//! `jq` transform runs on this wrapper: indexing and updating follow jq,
//! object keys are strings only (as in jq, which makes the choice above
//! unambiguous), and everything else is jaq's value unchanged.
//!
//! jaq's value type brings eight native filters of its own (`length`,
//! `tojson`, ...) typed on it; [`funs`] gives them for this type, with jq's
//! answers where they differ.

use std::{fmt, ops};

use jaq_core::{
    DataT, Error, Exn, ValR, ValX,
    box_iter::{BoxIter, box_once},
    native::{Filter, Fun, bome, run, unary, v},
    path::Opt,
    val::Range,
};
use jaq_json::{Num, Val};
use jaq_std::ValT as _;

/// jaq's value, indexed and updated as jq does (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JqVal(pub Val);

/// An error about a jaq value as one about a [`JqVal`]: same text, same
/// value for `catch`.
fn lift(e: Error<Val>) -> Error<JqVal> {
    Error::new(JqVal(e.into_val()))
}

fn lift_r(r: ValR<Val>) -> ValR<JqVal> {
    r.map(JqVal).map_err(lift)
}

fn fail(message: impl fmt::Display) -> Error<JqVal> {
    Error::str(message)
}

/// jq's name of a value's type, as its error messages use it.
fn type_name(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}

/// jq's "Cannot index T with K (k)".
fn cannot_index(v: &Val, index: &Val) -> Error<JqVal> {
    fail(format_args!("Cannot index {} with {}", type_name(v), describe(index)))
}

/// jq's bound on an index an update may pad an array to.
const MAX_ARRAY_INDEX: usize = 1 << 29;

/// An array index as jq takes it: integers as they are, other numbers
/// truncated.
fn array_index(index: &Val) -> Option<isize> {
    index.as_isize().or_else(|| {
        index
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.trunc().clamp(isize::MIN as f64, isize::MAX as f64) as isize)
    })
}

/// The start and end of a slice given as an object index (`.[{"start": 1, "end": 2}]`).
fn slice_of(index: &jaq_json::Map) -> Range<JqVal> {
    let bound = |name: &str| index.get(&Val::from(name.to_string())).cloned().map(JqVal);
    bound("start")..bound("end")
}

/// Absolute `[from, upto)` of a slice of `len` items as jq takes it: a
/// negative bound counts from the end, the start rounds down and the end
/// up, a missing or NaN bound is the whole, bounds clamp to the items.
fn slice_bounds(range: &Range<&JqVal>, len: usize) -> Result<(usize, usize), Error<JqVal>> {
    let bound = |b: Option<&&JqVal>, default: usize, round: fn(f64) -> f64| -> Result<usize, Error<JqVal>> {
        match b.map(|b| &b.0) {
            None | Some(Val::Null) => Ok(default),
            Some(v) => {
                let f = v
                    .as_f64()
                    .ok_or_else(|| fail("Start and end indices of an array slice must be numbers"))?;
                if f.is_nan() {
                    return Ok(default);
                }
                let f = if f < 0.0 { len as f64 + f } else { f };
                Ok(round(f).clamp(0.0, len as f64) as usize)
            }
        }
    };
    let from = bound(range.start.as_ref(), 0, f64::floor)?;
    let upto = bound(range.end.as_ref(), len, f64::ceil)?.max(from);
    Ok((from, upto))
}

/// The first output of `f` on `x`, if any.
fn first<'a, I: Iterator<Item = ValX<'a, JqVal>>>(
    f: &impl Fn(JqVal) -> I,
    x: Val,
) -> Result<Option<Val>, Exn<'a, JqVal>> {
    Ok(f(JqVal(x)).next().transpose()?.map(|y| y.0))
}

impl JqVal {
    /// Updates the array `items` at `index` as jq does: a negative index
    /// counts from the end, one past the end pads with nulls, no output
    /// deletes the item.
    fn update_item<'a, I: Iterator<Item = ValX<'a, JqVal>>>(
        mut items: Vec<Val>,
        index: &Val,
        f: impl Fn(JqVal) -> I,
    ) -> ValX<'a, JqVal> {
        let unchanged = |items: Vec<Val>| Ok(JqVal(items.into_iter().collect()));
        let i = match array_index(index) {
            Some(i) if i < 0 && i + (items.len() as isize) < 0 => {
                // Deleting there deletes nothing; setting fails.
                return match first(&f, Val::Null)? {
                    None => unchanged(items),
                    Some(_) => Err(fail("Out of bounds negative array index").into()),
                };
            }
            Some(i) if i < 0 => (i + items.len() as isize) as usize,
            Some(i) => i as usize,
            None => {
                return match first(&f, Val::Null)? {
                    None => unchanged(items),
                    Some(_) => Err(fail("Cannot set array element at NaN index").into()),
                };
            }
        };
        if i < items.len() {
            match first(&f, std::mem::take(&mut items[i]))? {
                Some(y) => items[i] = y,
                None => {
                    items.remove(i);
                }
            }
        } else if let Some(y) = first(&f, Val::Null)? {
            if i >= MAX_ARRAY_INDEX {
                return Err(fail("Array index too large").into());
            }
            items.resize(i, Val::Null);
            items.push(y);
        }
        unchanged(items)
    }
}

impl jaq_core::ValT for JqVal {
    fn from_num(n: &str) -> ValR<Self> {
        lift_r(Val::from_num(n))
    }

    fn from_map<I: IntoIterator<Item = (Self, Self)>>(iter: I) -> ValR<Self> {
        let mut pairs = Vec::new();
        for (k, v) in iter {
            if !matches!(k.0, Val::TStr(_)) {
                return Err(fail(format_args!(
                    "Object keys must be strings, not {} ({})",
                    type_name(&k.0),
                    k.0
                )));
            }
            pairs.push((k.0, v.0));
        }
        lift_r(Val::from_map(pairs))
    }

    fn key_values(self) -> BoxIter<'static, ValR<(Self, Self), Self>> {
        match self.0 {
            v @ (Val::Arr(_) | Val::Obj(_)) => Box::new(
                v.key_values()
                    .map(|kv| kv.map(|(k, v)| (JqVal(k), JqVal(v))).map_err(lift)),
            ),
            v => box_once(Err(fail(format_args!("Cannot iterate over {}", describe(&v))))),
        }
    }

    fn values(self) -> Box<dyn Iterator<Item = ValR<Self>>> {
        match self.0 {
            v @ (Val::Arr(_) | Val::Obj(_)) => Box::new(v.values().map(lift_r)),
            v => box_once(Err(fail(format_args!("Cannot iterate over {}", describe(&v))))),
        }
    }

    fn index(self, index: &Self) -> ValR<Self> {
        match (self.0, &index.0) {
            (Val::Null, _) => Ok(JqVal(Val::Null)),
            (Val::Obj(o), Val::TStr(_)) => Ok(JqVal(o.get(&index.0).cloned().unwrap_or_default())),
            (v @ Val::Arr(_), Val::Num(_)) => match array_index(&index.0) {
                Some(i) => lift_r(v.index(&Val::from(i))),
                None => Ok(JqVal(Val::Null)),
            },
            (v @ (Val::Arr(_) | Val::TStr(_) | Val::BStr(_)), Val::Obj(o)) => {
                let range = slice_of(o);
                JqVal(v).range(range.start.as_ref()..range.end.as_ref())
            }
            (v @ Val::Arr(_), Val::Arr(_)) => lift_r(v.index(&index.0)),
            (v, _) => Err(cannot_index(&v, &index.0)),
        }
    }

    fn range(self, range: Range<&Self>) -> ValR<Self> {
        match self.0 {
            Val::Null => Ok(JqVal(Val::Null)),
            Val::Arr(a) => {
                let (from, upto) = slice_bounds(&range, a.len())?;
                Ok(JqVal(a[from..upto].iter().cloned().collect()))
            }
            Val::TStr(s) => {
                let text = String::from_utf8_lossy(&s);
                let (from, upto) = slice_bounds(&range, text.chars().count())?;
                Ok(JqVal(Val::from(
                    text.chars().skip(from).take(upto - from).collect::<String>(),
                )))
            }
            v => Err(fail(format_args!("Cannot index {} with object", type_name(&v)))),
        }
    }

    fn map_values<'a, I: Iterator<Item = ValX<'a, Self>>>(self, opt: Opt, f: impl Fn(Self) -> I) -> ValX<'a, Self> {
        match self.0 {
            Val::Arr(a) => {
                let mut out = Vec::with_capacity(a.len());
                for x in unwrap_or_clone(a) {
                    out.extend(first(&f, x)?);
                }
                Ok(JqVal(out.into_iter().collect()))
            }
            Val::Obj(o) => {
                let mut out = Vec::with_capacity(o.len());
                for (k, x) in unwrap_or_clone(o) {
                    if let Some(y) = first(&f, x)? {
                        out.push((k, y));
                    }
                }
                Ok(JqVal(Val::obj(out.into_iter().collect())))
            }
            v => opt.fail(JqVal(v), |v| {
                fail(format_args!("Cannot iterate over {}", describe(&v.0))).into()
            }),
        }
    }

    fn map_index<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        index: &Self,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        if let (Val::Null | Val::Arr(_) | Val::TStr(_) | Val::BStr(_), Val::Obj(o)) = (&self.0, &index.0) {
            let range = slice_of(o);
            return self.map_range(range.start.as_ref()..range.end.as_ref(), opt, f);
        }
        match (self.0, &index.0) {
            (Val::Null, Val::TStr(_)) => Ok(JqVal(match first(&f, Val::Null)? {
                Some(y) => Val::obj([(index.0.clone(), y)].into_iter().collect()),
                None => Val::Null,
            })),
            (Val::Null, Val::Num(_)) => match first(&f, Val::Null)? {
                Some(_) => Self::update_item(Vec::new(), &index.0, f),
                None => Ok(JqVal(Val::Null)),
            },
            (Val::Obj(o), Val::TStr(_)) => {
                let mut o = unwrap_or_clone(o);
                match o.get_mut(&index.0) {
                    Some(x) => match first(&f, std::mem::take(x))? {
                        Some(y) => *x = y,
                        None => {
                            o.shift_remove(&index.0);
                        }
                    },
                    None => {
                        if let Some(y) = first(&f, Val::Null)? {
                            o.insert(index.0.clone(), y);
                        }
                    }
                }
                Ok(JqVal(Val::obj(o)))
            }
            (Val::Arr(a), Val::Num(_)) => Self::update_item(unwrap_or_clone(a), &index.0, f),
            (Val::Arr(_), Val::Arr(_)) => Err(fail("Cannot update field at array index of array").into()),
            (v, _) => opt.fail(JqVal(v), |v| cannot_index(&v.0, &index.0).into()),
        }
    }

    fn map_range<'a, I: Iterator<Item = ValX<'a, Self>>>(
        self,
        range: Range<&Self>,
        opt: Opt,
        f: impl Fn(Self) -> I,
    ) -> ValX<'a, Self> {
        let items = match self.0 {
            Val::Null => Vec::new(),
            Val::Arr(a) => unwrap_or_clone(a),
            Val::TStr(_) | Val::BStr(_) => return Err(fail("Cannot update string slices").into()),
            v => {
                return opt.fail(JqVal(v), |v| {
                    fail(format_args!(
                        "Cannot update field at object index of {}",
                        type_name(&v.0)
                    ))
                    .into()
                });
            }
        };
        let (from, upto) = slice_bounds(&range, items.len())?;
        let slice: Val = items[from..upto].iter().cloned().collect();
        let replacement = match first(&f, slice)? {
            None => Vec::new(),
            Some(Val::Arr(r)) => unwrap_or_clone(r),
            Some(_) => return Err(fail("A slice of an array can only be assigned another array").into()),
        };
        let mut items = items;
        items.splice(from..upto, replacement);
        Ok(JqVal(items.into_iter().collect()))
    }

    fn as_bool(&self) -> bool {
        self.0.as_bool()
    }

    fn into_string(self) -> Self {
        JqVal(self.0.into_string())
    }
}

impl jaq_std::ValT for JqVal {
    fn into_seq<S: FromIterator<Self>>(self) -> Result<S, Self> {
        match self.0 {
            Val::Arr(a) => Ok(unwrap_or_clone(a).into_iter().map(JqVal).collect()),
            v => Err(JqVal(v)),
        }
    }

    fn is_int(&self) -> bool {
        self.0.is_int()
    }

    fn as_isize(&self) -> Option<isize> {
        self.0.as_isize()
    }

    fn as_f64(&self) -> Option<f64> {
        self.0.as_f64()
    }

    fn is_utf8_str(&self) -> bool {
        self.0.is_utf8_str()
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        self.0.as_bytes()
    }

    fn as_sub_str(&self, sub: &[u8]) -> Self {
        JqVal(self.0.as_sub_str(sub))
    }

    fn from_utf8_bytes(b: impl AsRef<[u8]> + Send + 'static) -> Self {
        JqVal(Val::from_utf8_bytes(b))
    }
}

fn unwrap_or_clone<T: Clone>(rc: jaq_json::Rc<T>) -> T {
    jaq_json::Rc::try_unwrap(rc).unwrap_or_else(|rc| (*rc).clone())
}

/// jq's description of a value in an error: its type and its JSON text,
/// cut (at a character) with `...` past 29 bytes: `string ("abc")`,
/// `string ("a long te...")`.
fn describe(v: &Val) -> String {
    let text = whole_numbers(v.clone()).to_string();
    if text.len() <= 29 {
        return format!("{} ({text})", type_name(v));
    }
    let (keep, close) = match v {
        Val::TStr(_) | Val::BStr(_) => (25, "\""),
        _ => (26, ""),
    };
    let cut = (0..=keep).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{} ({}...{close})", type_name(v), &text[..cut])
}

/// An error's text as jq prints it: a string error as the string, any
/// other value as JSON.
pub fn error_message(e: Error<JqVal>) -> String {
    match e.into_val().0 {
        Val::TStr(s) => String::from_utf8_lossy(&s).into_owned(),
        v => v.to_string(),
    }
}

impl fmt::Display for JqVal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<bool> for JqVal {
    fn from(b: bool) -> Self {
        JqVal(Val::from(b))
    }
}

impl From<isize> for JqVal {
    fn from(i: isize) -> Self {
        JqVal(Val::from(i))
    }
}

impl From<usize> for JqVal {
    fn from(i: usize) -> Self {
        JqVal(Val::from(i))
    }
}

impl From<f64> for JqVal {
    fn from(x: f64) -> Self {
        JqVal(Val::from(x))
    }
}

impl From<String> for JqVal {
    fn from(s: String) -> Self {
        JqVal(Val::from(s))
    }
}

impl From<Range<JqVal>> for JqVal {
    fn from(r: Range<JqVal>) -> Self {
        JqVal(Val::from(r.start.map(|s| s.0)..r.end.map(|e| e.0)))
    }
}

impl FromIterator<JqVal> for JqVal {
    fn from_iter<T: IntoIterator<Item = JqVal>>(iter: T) -> Self {
        JqVal(iter.into_iter().map(|v| v.0).collect())
    }
}

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

fn is_nan(v: &Val) -> bool {
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
fn whole_numbers(v: Val) -> Val {
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

/// jq's bound on the nesting its recursive operations go through.
const MAX_DEPTH: usize = 10_000;

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

/// jq's `delpaths`: a negative index or a slice of an array as the
/// indices it names, the paths sorted and deleted from the last (so
/// earlier indices stay valid); a path through null or a missing key
/// deletes nothing, the empty path everything.
fn delete_paths(v: Val, paths: &Val) -> ValR<JqVal> {
    let Val::Arr(paths) = paths else {
        return Err(fail("Paths must be specified as an array"));
    };
    let mut expanded: Vec<Vec<Val>> = Vec::with_capacity(paths.len());
    for path in paths.iter() {
        let Val::Arr(path) = path else {
            return Err(fail("Path must be specified as an array"));
        };
        if path.len() > MAX_DEPTH {
            return Err(fail("Path too deep"));
        }
        let Some((last, parent)) = path.split_last() else {
            expanded.push(Vec::new());
            continue;
        };
        let at = |key: Val| parent.iter().cloned().chain([key]).collect::<Vec<_>>();
        match (get_path(&v, parent)?, last) {
            (Val::Arr(items), Val::Num(_)) => match array_index(last) {
                Some(i) if i < 0 && i + (items.len() as isize) >= 0 => {
                    expanded.push(at(Val::from(i + items.len() as isize)));
                }
                _ => expanded.push(path.to_vec()),
            },
            (Val::Arr(items), Val::Obj(o)) => {
                let range = slice_of(o);
                let (from, upto) = slice_bounds(&(range.start.as_ref()..range.end.as_ref()), items.len())?;
                expanded.extend((from..upto).map(|i| at(Val::from(i))));
            }
            _ => expanded.push(path.to_vec()),
        }
    }
    expanded.sort();
    expanded.dedup();
    let mut v = v;
    for path in expanded.iter().rev() {
        v = delete_path(v, path)?;
    }
    Ok(JqVal(v))
}

/// The value at `path` as jq indexes (null through null and missing keys).
fn get_path(v: &Val, path: &[Val]) -> Result<Val, Error<JqVal>> {
    use jaq_core::ValT;
    let mut at = JqVal(v.clone());
    for key in path {
        if matches!(at.0, Val::Null) {
            break;
        }
        at = at.index(&JqVal(key.clone()))?;
    }
    Ok(at.0)
}

/// `v` without what `path` names (see [`delete_paths`]).
fn delete_path(v: Val, path: &[Val]) -> Result<Val, Error<JqVal>> {
    let Some((key, rest)) = path.split_first() else {
        return Ok(Val::Null);
    };
    let cannot = |v: &Val| {
        let kind = if matches!(key, Val::TStr(_)) { "object" } else { "array" };
        fail(format_args!("Cannot delete field at {kind} index of {}", type_name(v)))
    };
    match (v, key) {
        (Val::Null, _) => Ok(Val::Null),
        (Val::Obj(o), Val::TStr(_)) => {
            if o.get(key)
                .is_none_or(|child| !rest.is_empty() && matches!(child, Val::Null))
            {
                return Ok(Val::Obj(o));
            }
            let mut o = unwrap_or_clone(o);
            if rest.is_empty() {
                o.shift_remove(key);
            } else if let Some(child) = o.get_mut(key) {
                *child = delete_path(std::mem::take(child), rest)?;
            }
            Ok(Val::obj(o))
        }
        (Val::Arr(a), Val::Num(_)) => {
            let len = a.len() as isize;
            let i = match array_index(key) {
                Some(i) if i < 0 => i + len,
                Some(i) => i,
                None => return Ok(Val::Arr(a)),
            };
            if i < 0 || i >= len || (!rest.is_empty() && matches!(a[i as usize], Val::Null)) {
                return Ok(Val::Arr(a));
            }
            let mut a = unwrap_or_clone(a);
            if rest.is_empty() {
                a.remove(i as usize);
            } else {
                let child = std::mem::take(&mut a[i as usize]);
                a[i as usize] = delete_path(child, rest)?;
            }
            Ok(a.into_iter().collect())
        }
        (Val::Arr(a), Val::Obj(o)) if rest.is_empty() => {
            let range = slice_of(o);
            let (from, upto) = slice_bounds(&(range.start.as_ref()..range.end.as_ref()), a.len())?;
            let mut a = unwrap_or_clone(a);
            a.drain(from..upto);
            Ok(a.into_iter().collect())
        }
        (v, _) => Err(cannot(&v)),
    }
}

/// jq's `length`: 0 for null, the absolute value of a number, characters
/// of a string, items of an array or object; an error for a boolean.
fn length(v: &Val) -> ValR<JqVal> {
    Ok(JqVal(match v {
        Val::Null => Val::from(0usize),
        Val::Num(_) if v.as_f64().is_some_and(|f| f < 0.0) => return lift_r(-v.clone()),
        Val::Num(_) => v.clone(),
        Val::TStr(s) => Val::from(String::from_utf8_lossy(s).chars().count()),
        Val::BStr(b) => Val::from(b.len()),
        Val::Arr(a) => Val::from(a.len()),
        Val::Obj(o) => Val::from(o.len()),
        Val::Bool(_) => return Err(fail(format_args!("{} has no length", describe(v)))),
    }))
}

/// jq's `contains`: substrings, every item of `b` in some item of `a`,
/// every key of `b` in `a` with a value containing `b`'s; equality for
/// other values of one type; an error for values of different types.
fn contains(a: &Val, b: &Val, depth: usize) -> Result<bool, Error<JqVal>> {
    if depth > MAX_DEPTH {
        return Err(fail("Containment check too deep"));
    }
    Ok(match (a, b) {
        (Val::TStr(a), Val::TStr(b)) => {
            let (a, b) = (a.as_ref().as_ref(), b.as_ref().as_ref());
            b.is_empty() || a.windows(b.len()).any(|w| w == b)
        }
        (Val::Arr(a), Val::Arr(b)) => {
            for y in b.iter() {
                let mut found = false;
                for x in a.iter() {
                    if contains(x, y, depth + 1)? {
                        found = true;
                        break;
                    }
                }
                if !found {
                    return Ok(false);
                }
            }
            true
        }
        (Val::Obj(a), Val::Obj(b)) => {
            for (k, y) in b.iter() {
                match a.get(k) {
                    Some(x) if contains(x, y, depth + 1)? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        (a, b) if type_name(a) == type_name(b) => a == b,
        (a, b) => {
            return Err(fail(format_args!(
                "{} and {} cannot have their containment checked",
                describe(a),
                describe(b)
            )));
        }
    })
}

/// jq's `has`: a string key of an object, an index of an array.
fn has(v: &Val, key: &Val) -> ValR<JqVal> {
    match (v, key) {
        (Val::Obj(o), Val::TStr(_)) => Ok(JqVal(Val::from(o.contains_key(key)))),
        (Val::Arr(a), Val::Num(_)) => {
            let i = key.as_f64().unwrap_or(-1.0);
            Ok(JqVal(Val::from(i >= 0.0 && i < a.len() as f64)))
        }
        _ => Err(fail(format_args!(
            "Cannot check whether {} has a {} key",
            type_name(v),
            type_name(key)
        ))),
    }
}

/// jq's `indices`: where `needle` starts in a string (in characters) or
/// in an array (a sub-array, or one item); null for null.
fn indices(v: &Val, needle: &Val) -> ValR<JqVal> {
    let found: Vec<usize> = match (v, needle) {
        (Val::Null, _) => return Ok(JqVal(Val::Null)),
        (Val::TStr(s), Val::TStr(n)) => {
            let (s, n) = (String::from_utf8_lossy(s), String::from_utf8_lossy(n));
            if n.is_empty() {
                return Ok(JqVal(Val::Null));
            }
            s.char_indices()
                .enumerate()
                .filter(|(_, (byte, _))| s[*byte..].starts_with(n.as_ref()))
                .map(|(char_index, _)| char_index)
                .collect()
        }
        (Val::Arr(a), Val::Arr(n)) if n.is_empty() => return Ok(JqVal(Val::Null)),
        (Val::Arr(a), Val::Arr(n)) => a
            .windows(n.len())
            .enumerate()
            .filter(|(_, w)| *w == n.as_slice())
            .map(|(i, _)| i)
            .collect(),
        (Val::Arr(a), x) => a.iter().enumerate().filter(|(_, y)| *y == x).map(|(i, _)| i).collect(),
        _ => return Err(cannot_index(v, needle)),
    };
    Ok(JqVal(found.into_iter().map(Val::from).collect()))
}

/// jq's `tonumber` of a string: a JSON number, also with a leading `+`
/// or `.`, nothing around it; an integer literal keeps its digits.
fn to_number(v: &Val) -> ValR<JqVal> {
    let refuse = || fail(format_args!("{} cannot be parsed as a number", describe(v)));
    let Val::TStr(s) = v else { return Err(refuse()) };
    let text = std::str::from_utf8(s).map_err(|_| refuse())?;
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match digits.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (digits, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    let well_formed = all_digits(whole)
        && all_digits(fraction)
        && !(whole.is_empty() && fraction.is_empty())
        && exponent.is_none_or(|e| !e.is_empty() && all_digits(e));
    if !well_formed {
        return Err(refuse());
    }
    if exponent.is_none() && !mantissa.contains('.') && !text.starts_with('+') {
        return lift_r(<Val as jaq_core::ValT>::from_num(text));
    }
    text.parse::<f64>().map(|f| JqVal(Val::from(f))).map_err(|_| refuse())
}

/// The native filters jaq's value type brings (`jaq_json::funs`), for
/// [`JqVal`], answering as jq does.
pub fn funs<D: for<'a> DataT<V<'a> = JqVal>>() -> impl Iterator<Item = Fun<D>> {
    natives().into_vec().into_iter().map(run)
}

fn natives<D: for<'a> DataT<V<'a> = JqVal>>() -> Box<[Filter<jaq_core::RunPtr<D>>]> {
    Box::new([
        ("fromjson", v(0), |cv| {
            let parsed = match &cv.1.0 {
                Val::TStr(s) if matches!(s.trim_ascii(), b"nan" | b"NaN" | b"-NaN") => Ok(JqVal::from(f64::NAN)),
                Val::TStr(s) => jaq_json::read::parse_single(s)
                    .map(JqVal)
                    .map_err(|e| fail(format_args!("{} (while parsing '{}')", e, String::from_utf8_lossy(s)))),
                other => Err(fail(format_args!("{} cannot be parsed as JSON", describe(other)))),
            };
            bome(parsed)
        }),
        ("tojson", v(0), |cv| {
            bome(Ok(JqVal(Val::from(whole_numbers(cv.1.0).to_string()))))
        }),
        ("_describe", v(0), |cv| bome(Ok(JqVal(Val::from(describe(&cv.1.0)))))),
        ("_tonumber", v(0), |cv| bome(to_number(&cv.1.0))),
        ("_delpaths", v(1), |cv| {
            unary(cv, |v, paths| delete_paths(v.0, &paths.0))
        }),
        ("_nan", v(0), |_| bome(Ok(JqVal::from(f64::NAN)))),
        ("_infinite", v(0), |_| bome(Ok(JqVal::from(f64::INFINITY)))),
        ("_isnan", v(0), |cv| bome(Ok(JqVal::from(is_nan(&cv.1.0))))),
        ("length", v(0), |cv| bome(length(&cv.1.0))),
        ("contains", v(1), |cv| {
            unary(cv, |x, y| contains(&x.0, &y.0, 0).map(|b| JqVal(Val::from(b))))
        }),
        ("has", v(1), |cv| unary(cv, |x, k| has(&x.0, &k.0))),
        ("indices", v(1), |cv| unary(cv, |x, n| indices(&x.0, &n.0))),
        ("bsearch", v(1), |cv| {
            unary(cv, |a, x| match &a.0 {
                Val::Arr(items) => {
                    let at = items.binary_search_by(|item| item.cmp(&x.0));
                    Ok(JqVal::from(at.map_or_else(|i| -1 - i as isize, |i| i as isize)))
                }
                other => Err(fail(format_args!("{} cannot be searched from", describe(other)))),
            })
        }),
    ])
}

impl JqVal {
    /// The value as jq prints it: whole numbers below 10^17 as integers
    /// (`2`, not jaq's `2.0`), NaN as null, infinities as the largest
    /// double.
    pub fn for_output(self) -> Self {
        JqVal(whole_numbers(self.0))
    }

    /// Parses one JSON value.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        jaq_json::read::parse_single(text).map(JqVal).map_err(|e| e.to_string())
    }

    pub fn is_object(&self) -> bool {
        matches!(self.0, Val::Obj(_))
    }
}
