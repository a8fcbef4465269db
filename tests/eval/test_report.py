"""The scorecard: aims (absolute, relative to the world, ranges), drift changes, the text
table and the JSON."""
import json
import math

from common import check, finish, need

need("numpy")
from eval.report import Scorecard, check as aim_ok, drift_change  # noqa: E402

check(aim_ok({"min": 0.9}, 0.95) is True and aim_ok({"min": 0.9}, 0.85) is False, "min aim")
check(aim_ok({"min": 0.9}, None) is None and aim_ok(None, 0.5) is None, "no value, no aim")
check(aim_ok({"max_world_plus": 3}, 4.0, 1.5) is True and
      aim_ok({"max_world_plus": 3}, 4.6, 1.5) is False, "world + 3")
check(aim_ok({"max_world_ratio": 1.5}, 0.9, 0.6) is True and
      aim_ok({"max_world_ratio": 1.5}, 0.91, 0.6) is False, "1.5 x world")
check(aim_ok({"world_ratio_range": (0.5, 2)}, 0.1, 0.2) is True and
      aim_ok({"world_ratio_range": (0.5, 2)}, 0.09, 0.2) is False and
      aim_ok({"world_ratio_range": (0.5, 2)}, 0.5, 0.2) is False, "0.5-2 x world")
check(abs(drift_change(0.9, 0.81, "higher") - 0.1) < 1e-9 and drift_change(0.9, 0.95, "higher") == 0,
      "a share that falls is worse, one that rises is not")
check(abs(drift_change(2.0, 2.3, "lower") - 0.15) < 1e-9 and drift_change(2.0, 1.0, "lower") == 0,
      "a spread that grows is worse")
check(abs(drift_change(1.0, 0.8, "same") - 0.2) < 1e-9, "speed: either way")
check(math.isinf(drift_change(0.0, 0.1, "lower")) and drift_change(0.0, 0.0, "lower") == 0,
      "from zero")

card = Scorecard(["ref", "c"])
card.add("adherence", "colours", "object colours", {"ref": 0.95, "c": 0.5}, 0.98)
card.add("temporal", "colour_std", "colour spread", {"ref": 2.0, "c": None}, 1.0, fmt="%.2f")
card.add("steering", "latency", "latency", {"ref": 0.5, "c": 0.25}, 0.0)
card.add_drift("colours", "object colours", 0.9, 0.7, "higher")
text = card.text("header")
print(text)
check("pass[ref]" in text and "FAIL[c]" in text and "n/a" in text, "table: pass, FAIL, n/a")
check("22.2%" in text and "FAIL" in text.split("drift")[-1], "drift row: change and result")
t = card.totals()
check(t["ref"] == {"aims": 2, "met": 2} and t["c"] == {"aims": 2, "met": 0},
      "totals count only figures with an aim and a value (%s)" % t)
d = json.loads(card.dumps({"settings": {"x": 1}}))
check(d["figures"]["adherence.colours"]["pass"] == {"ref": True, "c": False} and
      d["figures"]["drift.colours"]["change"] > 0.2 and d["settings"] == {"x": 1},
      "JSON carries figures, passes and extra fields")
finish()
