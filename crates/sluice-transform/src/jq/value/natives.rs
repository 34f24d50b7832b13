//! The native filters of [`JqVal`]: jaq's value's own eight (`length`,
//! `tojson`, `contains`, ...) with jq's answers, and those `jq_defs.jq`
//! builds on (`_delpaths`, `_tonumber`, `_describe`, ...).

use jaq_core::{
    DataT, Error, ValR,
    native::{Filter, Fun, bome, run, unary, v},
};
use jaq_json::Val;
use jaq_std::ValT as _;

use super::{
    JqVal, MAX_DEPTH,
    arithmetic::{is_nan, whole_numbers},
    array_index, cannot_index, describe, fail, lift_r, slice_bounds, slice_of, type_name, unwrap_or_clone,
};

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
