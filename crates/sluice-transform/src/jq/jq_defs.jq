# Definitions jq has and jaq lacks, and jq's behaviour where jaq's native
# filter differs, written in jq and loaded after jaq's standard library by
# the `jq` transform (sluice-transform/src/jq.rs): a definition here
# shadows jaq's filter of the same name and arity.

# Membership, as jq 1.5+ defines it.
def IN(s): any(s == .; .);
def IN(src; s): any(src == s; .);

# An object keyed by each row's index, as jq 1.5+ defines it.
def INDEX(stream; idx_expr): reduce stream as $row ({}; .[$row | idx_expr | tostring] |= $row);
def INDEX(idx_expr): INDEX(.[]; idx_expr);

# Rows paired with their match in an index, as jq 1.5+ defines it.
def JOIN($idx; idx_expr): [.[] | [., $idx[idx_expr]]];
def JOIN($idx; stream; idx_expr): stream | [., $idx[idx_expr]];
def JOIN($idx; stream; idx_expr; join_expr): stream | [., $idx[idx_expr]] | join_expr;

# Both ends trimmed of a string, as jq 1.8 defines it.
def trimstr($x): ltrimstr($x) | rtrimstr($x);

# jq's special numbers, without dividing by zero (an error in jq, as here).
def nan: _nan;
def infinite: _infinite;
def isnan: _isnan;
def isinfinite: type == "number" and (. == infinite or . == -infinite);
def isfinite: type == "number" and (isinfinite | not);
def isnormal: type == "number" and (isnan or isinfinite or . == 0 | not);
def logb: if isnan then . elif isinfinite then infinite elif . == 0 then -infinite else ilogb + 0.0 end;
def significand: if isnan or isinfinite or . == 0 then . else scalbln(.; -ilogb) end;

# As jq built with decNumber: a number literal keeps its digits until
# arithmetic makes it a double (jaq keeps integers and decimal literals).
def have_decnum: true;

# jq's `tostring`: strings as they are, anything else as `tojson` prints it.
def tostring: if type == "string" then . else tojson end;

# A CSV row from an array: strings quoted (quotes doubled), numbers and
# booleans as JSON, null as nothing.
def @csv:
  if type != "array" then error("\(type) (\(tojson)) cannot be csv-formatted, only an array can be")
  else map(
    if type == "string" then "\"" + (split("\"") | join("\"\"")) + "\""
    elif type == "number" or type == "boolean" then tojson
    elif type == "null" then ""
    else error("\(type) (\(tojson)) is not valid in a csv row")
    end) | join(",")
  end;

# A TSV row from an array: backslash, tab, newline and carriage return
# escaped in strings, numbers and booleans as JSON, null as nothing.
def @tsv:
  if type != "array" then error("\(type) (\(tojson)) cannot be tsv-formatted, only an array can be")
  else map(
    if type == "string" then
      split("\\") | join("\\\\") | split("\t") | join("\\t") | split("\n") | join("\\n") | split("\r") | join("\\r")
    elif type == "number" or type == "boolean" then tojson
    elif type == "null" then ""
    else error("\(type) (\(tojson)) is not valid in a tsv row")
    end) | join("\t")
  end;

# jq's `join`: null as "", numbers and booleans as JSON, strings as they are.
def join($x): reduce .[] as $i (null;
    (if . == null then "" else . + $x end)
    + ($i | if . == null then "" elif type == "boolean" or type == "number" then tojson else . end)
  ) // "";

# jq's trims: a prefix or suffix removed from a string; an error for
# anything but strings.
def ltrimstr($x):
  if type == "string" and ($x | type) == "string" then (if startswith($x) then .[($x | length):] else . end)
  else error("startswith() requires string inputs") end;
def rtrimstr($x):
  if type == "string" and ($x | type) == "string" then (if endswith($x) then .[:length - ($x | length)] else . end)
  else error("endswith() requires string inputs") end;

# jaq's filters under other names, for the definitions below that add
# jq's checks to them.
def _jaq_trim: trim;
def _jaq_ltrim: ltrim;
def _jaq_rtrim: rtrim;
def _jaq_utf8bytelength: utf8bytelength;
def _jaq_flatten($d): flatten($d);
def _jaq_limit($n; f): limit($n; f);
def _jaq_skip($n; f): skip($n; f);

def trim: if type == "string" then _jaq_trim else error("trim input must be a string") end;
def ltrim: if type == "string" then _jaq_ltrim else error("trim input must be a string") end;
def rtrim: if type == "string" then _jaq_rtrim else error("trim input must be a string") end;
def utf8bytelength:
  if type == "string" then _jaq_utf8bytelength else error("\(_describe) only strings have UTF-8 byte length") end;
def flatten($d): if $d < 0 then error("flatten depth must not be negative") else _jaq_flatten($d) end;
def limit($n; f): if $n < 0 then error("limit doesn't support negative count") else _jaq_limit($n; f) end;
def skip($n; f): if $n < 0 then error("skip doesn't support negative count") else _jaq_skip($n; f) end;
def nth($n; f): if $n < 0 then error("nth doesn't support negative indices") else first(skip($n; f)) end;

# jq's conversions: strict, with jq's messages.
def tonumber:
  if type == "number" then . elif type == "string" then _tonumber
  else error("\(_describe) cannot be parsed as a number") end;
def toboolean:
  if type == "boolean" then . elif . == "true" then true elif . == "false" then false
  else error("\(_describe) cannot be parsed as a boolean") end;

# jq's `from_entries`: keys from key, k, name, Name, K or Key; values
# from value, v or Value.
def from_entries: reduce .[] as $x ({};
    . + { ($x | if .key == null then .k // .name // .Name // .K // .Key else .key end
              | if type == "string" then . else tojson end):
          ($x | if has("value") then .value elif has("v") then .v else .Value end) });

# jq's deletion (native `_delpaths`): paths sorted and deleted from the
# last, nothing deleted through null.
def delpaths($paths): _delpaths($paths);
def del(f): delpaths([path(f)]);

# jq's bound on a path's length.
def _jaq_getpath($p): getpath($p);
def _jaq_setpath($p; $x): setpath($p; $x);
def getpath($p): if ($p | length) > 10000 then error("Path too deep") else _jaq_getpath($p) end;
def setpath($p; $x): if ($p | length) > 10000 then error("Path too deep") else _jaq_setpath($p; $x) end;

# jq's `pick`: the paths of `f`, with their values, in a value that has only them.
def pick(f): . as $top | reduce path(f) as $p (null; setpath($p; $top | getpath($p)));

# jq's string search, with its messages.
def _strindices($i):
  if type != "string" then error("\(_describe) cannot be searched, as it is not a string")
  elif ($i | type) != "string" then error("\($i | _describe) is not a string")
  else indices($i) end;

# jq's codepoints to a string: fractions cut, what is no Unicode scalar
# value replaced by U+FFFD.
def _jaq_implode: implode;
def implode:
  if type != "array" then error("implode input must be an array")
  else map(
    if type != "number" or isnan then error("\(_describe) can't be imploded, unicode codepoint needs to be numeric")
    elif . < 0 or . >= 1114112 or (. >= 55296 and . < 57344) then 65533
    else floor end)
  | _jaq_implode end;

# jq's broken-down times: short arrays padded with zeros, jq's messages.
def _jaq_mktime: mktime;
def _jaq_strftime($f): strftime($f);
def _jaq_strflocaltime($f): strflocaltime($f);
def _broken_down($what):
  if type == "number" then gmtime
  elif type == "array" and all(.[]; type == "number") then . + [range(6 - length) | 0]
  else error("\($what) requires parsed datetime inputs") end;
def mktime:
  if type != "array" then error("mktime requires array of 6 numbers") else _broken_down("mktime") | _jaq_mktime end;
def strftime($f):
  if ($f | type) != "string" then error("strftime/1 requires a string format")
  else _broken_down("strftime/1") | _jaq_strftime($f) end;
def strflocaltime($f):
  if ($f | type) != "string" then error("strflocaltime/1 requires a string format")
  else _broken_down("strflocaltime/1") | _jaq_strflocaltime($f) end;
