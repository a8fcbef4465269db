"""The scorecard: figures with their aims, as a text table and as JSON.

A figure is a row: section, key, label, one value per backend, the world's value (what the
parser and captions allow on rendered clips, or the Frechet floor), the aim, and pass/fail per
backend. Aims come in three forms (AIMS): an absolute bound ("min"/"max" on the value), a bound
relative to the world's value ("max_world_plus", "max_world_ratio", "world_ratio_range"), or
none (the figure is reported for information). A figure with no value (no events, no tracks)
neither passes nor fails.

Thread-safety: plain functions.
"""
import json
import math

# key -> aim
AIMS = {
    "adherence.background": {"min": 0.90},
    "adherence.colours": {"min": 0.90},
    "adherence.count": {"min": 0.80},
    "steering.shown": {"min": 0.90},
    "permanence.reappear": {"min": 0.90},
    "temporal.colour_std": {"max_world_plus": 3.0},
    "temporal.accel": {"max_world_ratio": 1.5},
    "temporal.speed": {"world_ratio_range": (0.5, 2.0)},
}
DRIFT_TOLERANCE = 0.10


def aim_text(aim):
    if not aim:
        return "-"
    if "min" in aim:
        return ">= %.2f" % aim["min"]
    if "max" in aim:
        return "<= %.2f" % aim["max"]
    if "max_world_plus" in aim:
        return "<= world + %g" % aim["max_world_plus"]
    if "max_world_ratio" in aim:
        return "<= %g x world" % aim["max_world_ratio"]
    if "world_ratio_range" in aim:
        lo, hi = aim["world_ratio_range"]
        return "%g-%g x world" % (lo, hi)
    if "drift" in aim:
        return "change <= %d%%" % round(100 * aim["drift"])
    return "?"


def check(aim, value, world=None):
    """True/False against the aim, None when there is no aim or nothing to compare."""
    if not aim or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if "min" in aim:
        return value >= aim["min"]
    if "max" in aim:
        return value <= aim["max"]
    if world is None:
        return None
    if "max_world_plus" in aim:
        return value <= world + aim["max_world_plus"]
    if "max_world_ratio" in aim:
        return value <= aim["max_world_ratio"] * world + 1e-12
    if "world_ratio_range" in aim:
        lo, hi = aim["world_ratio_range"]
        return world > 0 and lo <= value / world <= hi
    return None


def drift_change(a, b, better):
    """Relative change from window A to window B in the bad direction (positive = worse):
    better "higher" (shares), "lower" (spreads, FD) or "same" (speed: either way)."""
    if a is None or b is None:
        return None
    if a == 0:
        return 0.0 if b == 0 else (math.inf if better != "higher" or b < 0 else 0.0)
    r = (b - a) / abs(a)
    if better == "higher":
        return max(-r, 0.0)
    if better == "lower":
        return max(r, 0.0)
    return abs(r)


class Scorecard:
    def __init__(self, backends):
        self.backends = list(backends)
        self.rows = []

    def add(self, section, key, label, values, world=None, aim=None, fmt="%.3f", note=""):
        """values: {backend: value}; aim defaults to AIMS[section.key]."""
        full = "%s.%s" % (section, key)
        if aim is None:
            aim = AIMS.get(full)
        passed = {b: check(aim, values.get(b), world) for b in self.backends}
        self.rows.append({"section": section, "key": full, "label": label,
                          "values": {b: values.get(b) for b in self.backends}, "world": world,
                          "aim": aim, "aim_text": aim_text(aim), "pass": passed, "fmt": fmt,
                          "note": note})

    def add_drift(self, key, label, a, b, better, fmt="%.3f"):
        """A drift row: the A and B window figures of one backend ("c")."""
        ch = drift_change(a, b, better)
        aim = {"drift": DRIFT_TOLERANCE}
        passed = None if ch is None else ch <= DRIFT_TOLERANCE
        self.rows.append({"section": "drift", "key": "drift." + key, "label": label,
                          "values": {"A": a, "B": b}, "change": ch, "world": None, "aim": aim,
                          "aim_text": aim_text(aim), "pass": {"c": passed}, "fmt": fmt,
                          "note": ""})

    def totals(self):
        out = {}
        for b in self.backends:
            checked = [r["pass"].get(b) for r in self.rows if r["pass"].get(b) is not None]
            out[b] = {"aims": len(checked), "met": sum(bool(x) for x in checked)}
        return out

    # --- output ---------------------------------------------------------------------------

    @staticmethod
    def _v(fmt, v):
        if v is None:
            return "n/a"
        if isinstance(v, float) and math.isinf(v):
            return "inf"
        return fmt % v

    def text(self, header=""):
        cols = self.backends
        lines = [header] if header else []
        w_label = max([len(r["label"]) for r in self.rows] + [20])
        head = "%-10s %-*s" % ("section", w_label, "figure")
        for b in cols:
            head += " %10s" % ("gen[%s]" % b)
        head += " %10s  %-18s %s" % ("world", "aim", "result")
        lines.append(head)
        lines.append("-" * len(head))
        drift_rows = [r for r in self.rows if r["section"] == "drift"]
        for r in self.rows:
            if r["section"] == "drift":
                continue
            s = "%-10s %-*s" % (r["section"], w_label, r["label"])
            for b in cols:
                s += " %10s" % self._v(r["fmt"], r["values"].get(b))
            s += " %10s  %-18s" % (self._v(r["fmt"], r["world"]), r["aim_text"])
            res = []
            for b in cols:
                p = r["pass"].get(b)
                if p is not None:
                    res.append(("pass" if p else "FAIL") + ("" if len(cols) == 1 else "[%s]" % b))
            s += " " + (" ".join(res) if res else "-")
            if r["note"]:
                s += "  (%s)" % r["note"]
            lines.append(s)
        if drift_rows:
            lines.append("")
            lines.append("%-10s %-*s %10s %10s %8s  %-18s %s" % ("drift", w_label, "figure (C engine)",
                                                               "frames A", "frames B", "worse",
                                                               "aim", "result"))
            for r in drift_rows:
                ch = r["change"]
                p = r["pass"]["c"]
                lines.append("%-10s %-*s %10s %10s %8s  %-18s %s" % (
                    "drift", w_label, r["label"], self._v(r["fmt"], r["values"]["A"]),
                    self._v(r["fmt"], r["values"]["B"]),
                    "n/a" if ch is None else ("inf" if math.isinf(ch) else "%.1f%%" % (100 * ch)),
                    r["aim_text"], "-" if p is None else ("pass" if p else "FAIL")))
        lines.append("")
        for b, t in self.totals().items():
            lines.append("aims met [%s]: %d of %d" % (b, t["met"], t["aims"]))
        return "\n".join(lines) + "\n"

    def to_json(self):
        def clean(v):
            if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v
        figures = {}
        for r in self.rows:
            figures[r["key"]] = clean({k: r[k] for k in ("label", "values", "world", "aim_text",
                                                         "pass", "note") if k in r} |
                                      ({"change": r["change"]} if "change" in r else {}))
        return {"figures": figures, "totals": self.totals()}

    def dumps(self, extra=None):
        d = self.to_json()
        if extra:
            d.update(extra)
        return json.dumps(d, indent=1, sort_keys=False, default=float)
