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
//! Numbers and operators are in [`arithmetic`]; jaq's value type brings
//! eight native filters of its own (`length`, `tojson`, ...) typed on it,
//! and [`natives`] gives them for this type, with jq's answers where they
//! differ, beside the natives `jq_defs.jq` builds on.

mod arithmetic;
mod natives;

use std::fmt;

use jaq_core::{
    Error, Exn, ValR, ValX,
    box_iter::{BoxIter, box_once},
    path::Opt,
    val::Range,
};
use jaq_json::Val;
use jaq_std::ValT as _;

use self::arithmetic::whole_numbers;
pub use self::natives::funs;

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

macro_rules! from_jaq_value {
    ($($t:ty),*) => {$(
        impl From<$t> for JqVal {
            fn from(x: $t) -> Self {
                JqVal(Val::from(x))
            }
        }
    )*};
}

from_jaq_value!(bool, isize, usize, f64, String);

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

/// jq's bound on the nesting its recursive operations go through.
const MAX_DEPTH: usize = 10_000;

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
