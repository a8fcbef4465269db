"""Steering on rendered world clips: a switch whose change the video shows at the switch chunk
is detected there (latency 0); the same change one chunk late is still within the aim
(latency 1); two chunks late it is not; a video that never changes is a miss."""
import dataclasses

from common import check, finish, need

need("numpy")
from eval import metrics as M  # noqa: E402
from eval.sets import Geometry, steering_set  # noqa: E402
from eval.track import parse_clip  # noqa: E402
from world import render_clip  # noqa: E402

G = Geometry()
items = steering_set(4, G, 48)
check([it.switch_kind for it in items] == ["recolour", "add", "remove", "sky"],
      "the steering set takes every switch kind in turn")
check(all(it.switch_frame in (16, 24) for it in items), "switches sit on chunk boundaries")


def run(item, video_switch_frame):
    sw = None if video_switch_frame is None else dataclasses.replace(item.switch,
                                                                      frame=video_switch_frame)
    frames, _ = render_clip(item.scene, item.n_frames, size=(G.height, G.width), switch=sw)
    return M.steering(parse_clip(frames), item.prompts, item.switch_frame,
                      G.chunks(item.n_frames))


for it in items:
    ch = M.switch_change(*it.prompts)
    check(bool(ch), "%s: the captions differ in something the parser sees (%s)"
          % (it.switch_kind, ch))
    k = G.chunk_of(it.switch_frame)
    r = run(it, it.switch_frame)
    check(r["shown"] == 1 and r["latency"] == 0 and r["early"] == 0,
          "%s: change at the switch chunk -> shown, latency 0 (%s)" % (it.switch_kind, r))
    r = run(it, G.boundary(k + 1))
    check(r["shown"] == 1 and r["latency"] == 1, "%s: one chunk late -> latency 1, shown (%s)"
          % (it.switch_kind, r["latency"]))
    r = run(it, G.boundary(k + 2))
    check(r["shown"] == 0 and r["latency"] == 2, "%s: two chunks late -> latency 2, missed"
          % it.switch_kind)
    r = run(it, None)
    check(r["shown"] == 0 and r["latency"] is None, "%s: no change in the video -> missed"
          % it.switch_kind)
    r = run(it, G.boundary(k - 1))
    check(r["shown"] == 0 and r["early"] == 1, "%s: change a chunk before the prompt -> "
          "counted early, not shown" % it.switch_kind)

check(M.switch_change("a red ball on a grid", "a red ball on a grid") == {},
      "identical prompts ask for no change")
check(M.switch_change("a red ball on a grid", "a red ball at night") == {"sky": "night"},
      "a sky switch")
check(M.switch_change("a red ball on a grid", "a red ball and a blue box on a grid")
      == {"colours": {"blue": 1}}, "an added object")
try:
    M.steering(parse_clip(render_clip(items[0].scene, 16, size=(128, 128))[0]),
               items[0].prompts, 5, G.chunks(16))
    check(False, "a switch off a chunk boundary is refused")
except ValueError:
    check(True, "a switch off a chunk boundary is refused")
finish()
