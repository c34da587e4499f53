"""Filters for RuLake searches from Python: an expression builder, or JSON.

A search's `SearchParams.filter` is a `rulake.v1.Filter` message (docs/api.md,
"Payload columns and filters"). Build one from Python expressions:

    from rulake_filter import col
    f = (col("lang") == "en") & (col("year") >= 2024) & ~col("title").is_null()
    params = pb.SearchParams(k=10, filter=f.to_proto(pb), output_columns=["title", "year"])

or take it as JSON, in the message's canonical JSON form (what
`google.protobuf.json_format` prints), for filters that arrive as
configuration:

    f = from_json(pb, {"all": {"filters": [
        {"eq": {"column": "lang", "value": {"stringValue": "en"}}},
        {"range": {"column": "year", "gte": {"intValue": "2024"}}}]}})

Python values map to payload types as the server types them: bool, int,
float and str; `datetime.datetime` becomes a timestamp (UTC if naive) and
`datetime.date` a date. A string compared with a timestamp or date column is
parsed by the server (`"2024-06-01T00:00:00Z"`).
"""

import datetime

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def value(pb, v):
    """A Python value as a `rulake.v1.Value`."""
    if v is None:
        return pb.Value(null_value=True)
    if isinstance(v, bool):
        return pb.Value(bool_value=v)
    if isinstance(v, int):
        return pb.Value(int_value=v)
    if isinstance(v, float):
        return pb.Value(float_value=v)
    if isinstance(v, str):
        return pb.Value(string_value=v)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        delta = v - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return pb.Value(timestamp_micros=micros)
    if isinstance(v, datetime.date):
        return pb.Value(date_days=(v - datetime.date(1970, 1, 1)).days)
    raise TypeError(f"no payload type for {v!r}")


class Expr:
    """A filter: combine with `&` (and), `|` (or), `~` (not)."""

    def __init__(self, build):
        self._build = build

    def to_proto(self, pb):
        """The `rulake.v1.Filter` message."""
        return self._build(pb)

    def __and__(self, other):
        return Expr(lambda pb: pb.Filter(all=pb.Filter.FilterList(filters=_flat(pb, "all", self, other))))

    def __or__(self, other):
        return Expr(lambda pb: pb.Filter(any=pb.Filter.FilterList(filters=_flat(pb, "any", self, other))))

    def __invert__(self):
        return Expr(lambda pb: pb.Filter(negate=self.to_proto(pb)))

    def __bool__(self):
        raise TypeError("combine filters with &, | and ~, not and/or/not")


def _flat(pb, kind, *exprs):
    """The operands of an `all` or `any`, nested ones of the same kind
    flattened, so `a & b & c` is one list."""
    out = []
    for e in exprs:
        f = e.to_proto(pb)
        if f.WhichOneof("kind") == kind:
            out.extend(getattr(f, kind).filters)
        else:
            out.append(f)
    return out


def all_of(*exprs):
    """Every one matches (none given: every row)."""
    return Expr(lambda pb: pb.Filter(all=pb.Filter.FilterList(filters=[e.to_proto(pb) for e in exprs])))


def any_of(*exprs):
    """At least one matches (none given: no row)."""
    return Expr(lambda pb: pb.Filter(any=pb.Filter.FilterList(filters=[e.to_proto(pb) for e in exprs])))


class col:
    """A payload column, to compare: `col("year") >= 2024`."""

    def __init__(self, name):
        self.name = name

    def __eq__(self, v):
        return Expr(lambda pb: pb.Filter(eq=pb.Filter.Equals(column=self.name, value=value(pb, v))))

    def __ne__(self, v):
        return ~(self == v)

    def _range(self, bound, v):
        return Expr(lambda pb: pb.Filter(range=pb.Filter.Range(column=self.name, **{bound: value(pb, v)})))

    def __gt__(self, v):
        return self._range("gt", v)

    def __ge__(self, v):
        return self._range("gte", v)

    def __lt__(self, v):
        return self._range("lt", v)

    def __le__(self, v):
        return self._range("lte", v)

    def between(self, lo, hi):
        """`lo <= column <= hi`."""
        return Expr(
            lambda pb: pb.Filter(
                range=pb.Filter.Range(column=self.name, gte=value(pb, lo), lte=value(pb, hi))
            )
        )

    def isin(self, values):
        """The column equals one of `values`."""
        values = list(values)
        return Expr(
            lambda pb: pb.Filter(
                in_set=pb.Filter.InSet(column=self.name, values=[value(pb, v) for v in values])
            )
        )

    def is_null(self):
        return Expr(lambda pb: pb.Filter(is_null=pb.Filter.IsNull(column=self.name)))

    def contains(self, s):
        """A list<string> column holds `s`."""
        return Expr(lambda pb: pb.Filter(contains=pb.Filter.Contains(column=self.name, value=s)))

    def startswith(self, prefix):
        """A string column starts with `prefix`."""
        return Expr(lambda pb: pb.Filter(prefix=pb.Filter.Prefix(column=self.name, prefix=prefix)))

    __hash__ = None


def from_json(pb, obj):
    """A `rulake.v1.Filter` from its canonical JSON form: a dict, or a
    string holding one."""
    from google.protobuf import json_format

    if isinstance(obj, str):
        return json_format.Parse(obj, pb.Filter())
    return json_format.ParseDict(obj, pb.Filter())
