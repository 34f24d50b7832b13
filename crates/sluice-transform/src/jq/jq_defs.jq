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

# Sluice's numbers are binary floating point, not decimal.
def have_decnum: false;

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

# jq's trims: a prefix or suffix removed from a string; anything else as it is.
def ltrimstr($x): if type == "string" and ($x | type) == "string" and startswith($x) then .[($x | length):] else . end;
def rtrimstr($x):
  if type == "string" and ($x | type) == "string" and endswith($x) then .[:length - ($x | length)] else . end;

# jq's `from_entries`: keys from key, k, name, Name, K or Key; values from value or v.
def from_entries: reduce .[] as $x ({};
    . + { ($x | if .key == null then .k // .name // .Name // .K // .Key else .key end
              | if type == "string" then . else tojson end):
          ($x | if has("value") then .value else .v end) });
