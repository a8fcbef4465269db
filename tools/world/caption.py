"""Captions: a small grammar that names what is on screen, and its inverse.

describe(records, t0, t1) turns the ground-truth records of a span of frames into a description
(sky, ground, occluder, and groups of objects with count, size, colour, kind and verb);
phrasings(desc, rng) writes it as several sentences, the first canonical; parse_caption(text)
reads a sentence back into a description (sizes or verbs the sentence leaves out become None),
so that an evaluation can check generated video against any prompt of the grammar.

All words come from vocab.py. Stateless and thread-safe.
"""

import re

from . import vocab

# A verb's weight when choosing the word for a span: brief events (a fall, a bounce) win over
# the resting that follows them, because that is what a viewer would name.
_VERB_WEIGHT = {"falling": 1.5, "bouncing": 1.2, "rolling": 1.0, "sliding": 1.0, "resting": 0.8}
MIN_VISIBLE = 0.3   # an object is "on screen" in a span if it shows this much in some frame


def describe(records, t0=0, t1=None, seen=None):
    """Description of frames [t0, t1) of a clip's records.

    An object is named if it shows at least MIN_VISIBLE in some frame of the span, or, when
    `seen` (a set of ids) is given, if it is in the span and in `seen`: clip_captions passes
    the objects seen anywhere in the clip, so that an object that comes out from behind the
    occluder after a switch does not make the captions differ by more than the switch.
    Returns {"sky", "ground", "occluder", "groups": [{"count", "size", "colour", "kind",
    "verb"}, ...]}; groups are ordered by their first object's id.
    """
    recs = records[t0:t1]
    if not recs:
        raise ValueError("empty frame range [%d, %s)" % (t0, t1))
    skies = [r["sky"] for r in recs]
    sky = max(set(skies), key=lambda s: (skies.count(s), -skies.index(s)))
    per = {}
    for r in recs:
        for o in r["objects"]:
            e = per.setdefault(o["id"], {"obj": o, "verbs": {}, "vis": 0.0, "n": 0})
            e["obj"] = o  # the latest colour wins within a span
            e["vis"] = max(e["vis"], o["visible"])
            if o["visible"] >= 0.2:
                e["verbs"][o["verb"]] = e["verbs"].get(o["verb"], 0) + 1
            e["n"] += 1
    # Name what shows; if nothing shows enough (everything behind the occluder, say), name
    # what is there rather than nothing.
    floor = MIN_VISIBLE if any(e["vis"] >= MIN_VISIBLE for e in per.values()) else -1.0
    groups = {}
    order = []
    for oid in sorted(per):
        e = per[oid]
        if e["vis"] < floor and not (seen is not None and oid in seen):
            continue
        o = e["obj"]
        verbs = e["verbs"] or {o["verb"]: 1}
        verb = max(verbs, key=lambda v: (verbs[v] * _VERB_WEIGHT[v], -vocab.VERBS.index(v)))
        key = (o["size"], o["colour"], o["kind"], verb)
        if key not in groups:
            groups[key] = 0
            order.append(key)
        groups[key] += 1
    return {"sky": sky, "ground": recs[0]["ground"], "occluder": recs[0]["occluder"],
            "groups": [{"count": groups[k], "size": k[0], "colour": k[1], "kind": k[2], "verb": k[3]}
                       for k in order]}


def merge_groups(groups, keep_size=True, keep_verb=True):
    """Groups with the size and/or verb dropped, merging those that become equal."""
    out, index = [], {}
    for g in groups:
        key = (g["size"] if keep_size else None, g["colour"], g["kind"], g["verb"] if keep_verb else None)
        if key in index:
            out[index[key]]["count"] += g["count"]
        else:
            index[key] = len(out)
            out.append({"count": g["count"], "size": key[0], "colour": key[1], "kind": key[2], "verb": key[3]})
    return out


def _noun_phrase(g, use_one=False):
    n = g["count"]
    if n < 1 or n > vocab.MAX_PER_GROUP:
        raise ValueError("a group of %d objects cannot be captioned (1..%d)" % (n, vocab.MAX_PER_GROUP))
    words = []
    if g["size"]:
        words.append(g["size"])
    words.append(g["colour"])
    words.append(vocab.PLURAL[g["kind"]] if n > 1 else g["kind"])
    if n == 1:
        art = "one" if use_one else ("an" if words[0][0] in "aeiou" else "a")
    else:
        art = vocab.COUNT_WORDS[n]
    s = art + " " + " ".join(words)
    if g["verb"]:
        s += " " + g["verb"]
    return s


def _objects_phrase(groups, rng=None):
    parts = [_noun_phrase(g, use_one=rng is not None and rng.random() < 0.15) for g in groups]
    return " and ".join(parts)


def _pick(options, rng):
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def caption(desc, rng=None, keep_size=True, keep_verb=True, template=0):
    """One sentence. With rng None: canonical phrases; otherwise random alternatives."""
    groups = merge_groups(desc["groups"], keep_size, keep_verb)
    if not groups:
        raise ValueError("a description with no objects cannot be captioned")
    obj = _objects_phrase(groups, rng)
    occ_options = vocab.OCCLUDER_PHRASES[desc["occluder"]]
    if keep_verb:
        # "a ball rolling passing behind a wall" reads badly: one verb per object.
        occ_options = [p for p in occ_options if not p.startswith("passing")] or occ_options
    occ = _pick(occ_options, rng)
    grd = _pick(vocab.GROUND_PHRASES[desc["ground"]], rng)
    sky = _pick(vocab.SKY_PHRASES[desc["sky"]], rng)
    if template == 0:
        parts = [obj, occ, grd, sky]
    elif template == 1:
        parts = [sky, obj, occ, grd]
    elif template == 2:
        parts = [vocab.SCENE_OPENERS[0], sky, "with", obj, occ, grd]
    else:
        parts = [obj, grd, occ, sky]
    return " ".join(p for p in parts if p)


def phrasings(desc, rng=None, n=4):
    """n different sentences for one description; the first is the canonical one
    (every size and verb named, canonical phrases). rng None gives only the canonical one."""
    out = [caption(desc)]
    if rng is None:
        return out
    tries = 0
    while len(out) < n and tries < 8 * n:
        tries += 1
        s = caption(desc, rng, keep_size=rng.random() < 0.6, keep_verb=rng.random() < 0.75,
                    template=int(rng.integers(4)))
        if s not in out:
            out.append(s)
    return out


def seen_ids(records):
    """Ids of the objects that show at least MIN_VISIBLE in some frame."""
    return {o["id"] for r in records for o in r["objects"] if o["visible"] >= MIN_VISIBLE}


def clip_captions(records, switch_frame=-1, rng=None, n=4):
    """{"before": [...], "after": [...] or None, "switch_frame"} for a rendered clip."""
    if switch_frame is None or switch_frame < 0:
        return {"before": phrasings(describe(records), rng, n), "after": None, "switch_frame": -1}
    seen = seen_ids(records)
    return {"before": phrasings(describe(records, 0, switch_frame, seen), rng, n),
            "after": phrasings(describe(records, switch_frame, None, seen), rng, n),
            "switch_frame": int(switch_frame)}


# --- the inverse ------------------------------------------------------------------------

_COUNT = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
_KIND_OF = {k: k for k in vocab.KINDS}
_KIND_OF.update({v: k for k, v in vocab.PLURAL.items()})


def _find_key(tokens, keys):
    for i in range(len(tokens)):
        for seq, name in keys:
            if tuple(tokens[i:i + len(seq)]) == seq:
                return name
    return None


def parse_caption(text):
    """Read a grammar sentence back: {"sky", "ground", "occluder", "groups"}; a sentence that
    names no sky gives sky None; sizes and verbs it leaves out are None."""
    tokens = re.findall(r"[a-z]+", text.lower())
    groups = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in _COUNT:
            j = i + 1
            size = None
            if j < len(tokens) and tokens[j] in vocab.SIZES:
                size = tokens[j]
                j += 1
            if j + 1 < len(tokens) and tokens[j] in vocab.PALETTE and tokens[j + 1] in _KIND_OF:
                colour, kind = tokens[j], _KIND_OF[tokens[j + 1]]
                j += 2
                verb = None
                if j < len(tokens) and tokens[j] in vocab.VERBS:
                    verb = tokens[j]
                    j += 1
                groups.append({"count": _COUNT[t], "size": size, "colour": colour, "kind": kind,
                               "verb": verb})
                i = j
                continue
        i += 1
    return {"sky": _find_key(tokens, vocab.SKY_KEYS),
            "ground": _find_key(tokens, vocab.GROUND_KEYS) or "none",
            "occluder": _find_key(tokens, vocab.OCCLUDER_KEYS) or "none",
            "groups": groups}


def object_counts(desc):
    """{(colour, kind): count} of a description (sizes and verbs ignored)."""
    out = {}
    for g in desc["groups"]:
        k = (g["colour"], g["kind"])
        out[k] = out.get(k, 0) + g["count"]
    return out


def matches(expected, got):
    """True when `got` (e.g. parsed from a caption) agrees with `expected` on every field
    `got` names: sky, ground, occluder and the multiset of objects (size/verb when given)."""
    for k in ("sky", "ground", "occluder"):
        if got.get(k) is not None and got[k] != expected[k]:
            return False
    keep_size = all(g["size"] is not None for g in got["groups"])
    keep_verb = all(g["verb"] is not None for g in got["groups"])
    a = merge_groups(expected["groups"], keep_size, keep_verb)
    b = merge_groups(got["groups"], keep_size, keep_verb)
    norm = lambda gs: sorted((g["count"], g["size"] or "", g["colour"], g["kind"], g["verb"] or "") for g in gs)
    return norm(a) == norm(b)
