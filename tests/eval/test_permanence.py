"""Object permanence on rendered world clips: objects that pass behind the occluder come out
again with their colour; the same clips with the object removed, or recoloured, while it is
hidden fail; a clip without an occluder has no events."""
import dataclasses

from common import check, finish, need

need("numpy")
from eval import metrics as M  # noqa: E402
from eval.sets import Geometry, permanence_set  # noqa: E402
from eval.track import build_tracks, parse_clip  # noqa: E402
from world import Switch, render_clip, vocab  # noqa: E402

G = Geometry()
items = permanence_set(8, G, 112)   # 7 s clips: slow objects take up to 3.5 s behind a tree


def hidden_moment(records):
    """(object id, frame) of the first pass fully behind the occluder."""
    seen = {}
    for r in records:
        for o in r["objects"]:
            if o["visible"] >= 0.9:
                seen[o["id"]] = True
            elif o["visible"] < 0.05 and seen.get(o["id"]) and abs(o["vx"]) > 0.1:
                return o["id"], r["t"]
    return None


def score(frames):
    cp = parse_clip(frames)
    return M.permanence(cp, build_tracks(cp), G.fps)


tot = {"clean": {}, "removed": {}, "recoloured": {}}
for it in items:
    frames, records = it.world_clip(G)
    M.merge(tot["clean"], score(frames))
    oid, t = hidden_moment(records)
    colour = next(o["colour"] for o in records[t]["objects"] if o["id"] == oid)
    other = next(c for c in ("white", "purple", "green", "red") if c != colour)
    for name, sw in (("removed", Switch("remove", t, {"id": oid})),
                     ("recoloured", Switch("recolour", t, {"id": oid, "colour": other}))):
        fr, _ = render_clip(it.scene, it.n_frames, size=(G.height, G.width), switch=sw)
        M.merge(tot[name], score(fr))
for k, v in tot.items():
    print(k, v, M.permanence_summary(v))
c, rm, rc = (M.permanence_summary(tot[k]) for k in ("clean", "removed", "recoloured"))
check(c["events"] >= 4 and c["reappear"] >= 0.9,
      "world clips: occluded objects come back (%s of %d)" % (c["reappear"], c["events"]))
check(rm["vanished"] >= 3 and rm["reappear"] <= c["reappear"] - 0.3,
      "object removed while hidden: it vanishes (%d vanished, %.2f back)"
      % (rm["vanished"], rm["reappear"]))
check(rc["changed"] >= 3 and rc["reappear"] <= c["reappear"] - 0.3,
      "object recoloured while hidden: it comes back changed (%d changed, %.2f back)"
      % (rc["changed"], rc["reappear"]))

it = items[0]
scene = dataclasses.replace(it.scene, occluder="none")
fr, _ = render_clip(scene, 48, size=(128, 128))
cp = parse_clip(fr)
check(cp.occ_mask is None and score(fr)["events"] == 0, "no occluder: no events")
check(vocab.OCCLUDERS[0] == "none", "vocabulary: occluder 'none' first")
finish()
