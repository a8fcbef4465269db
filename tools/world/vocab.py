"""The world's closed vocabulary: every name the renderer, the captions and the parser share.

Everything a caption can say is listed here, once. The renderer looks colours and backgrounds up
by these names, the caption grammar draws its phrases from these tables, the scene parser
classifies pixels against the same palette, and the tokenizer is trained on the grammar's output,
so adding a word means adding it here (and nowhere else).

Index order of every tuple below is part of the on-disk dataset format (records store indices):
append new names at the end, never reorder.
"""

# --- objects -------------------------------------------------------------------------------

KINDS = ("ball", "box", "triangle")
PLURAL = {"ball": "balls", "box": "boxes", "triangle": "triangles"}

# Object palette (sRGB). Chosen so that every pair is at least ~75 apart in RGB and every colour
# stands off every background by ~50 or more: the parser classifies a pixel by the nearest
# palette entry, and the model's output is judged by that parser.
PALETTE = {
    "red": (220, 45, 45),
    "green": (50, 185, 70),
    "blue": (50, 100, 235),
    "yellow": (245, 215, 50),
    "white": (245, 245, 245),
    "purple": (150, 70, 205),
    "orange": (250, 140, 30),
}
COLOURS = tuple(PALETTE)
OUTLINE_RGB = (20, 20, 28)  # the dark rim every object is drawn with

SIZES = ("small", "big")
# Half-extent in world units (the frame is 1.0 wide): ball radius, half the side of a box,
# half the base (and half the height) of a triangle. 18 and 27 pixels across at 128x128, 2-3
# latent cells of 8 pixels: at 10 and 17 pixels the autoencoder lost their shapes (docs/world.md).
SIZE_HALF = {"small": 0.07, "big": 0.105}

VERBS = ("bouncing", "rolling", "falling", "sliding", "resting")

COUNT_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
MAX_PER_GROUP = 4

# --- backgrounds ---------------------------------------------------------------------------

# The backdrop that fills the frame behind everything.
SKIES = ("day", "sunset", "night", "grid", "grey", "black", "teal")
PLAIN_RGB = {"grey": (125, 125, 132), "black": (14, 14, 18), "teal": (30, 100, 110)}

# The strip of ground the objects stand on; "none" puts the floor at the frame's bottom edge.
GROUNDS = ("none", "grass", "sand", "road")

# Things drawn in front of the objects, which pass behind them.
OCCLUDERS = ("none", "pillar", "tree", "wall")

# --- caption phrases -----------------------------------------------------------------------
# The first phrase of each list is the canonical one; the others are alternative phrasings the
# caption generator picks from so the model does not learn one fixed sentence.

SKY_PHRASES = {
    "day": ("on a sunny day", "in the daytime", "under a blue sky"),
    "sunset": ("at sunset", "under a sunset sky", "in the evening"),
    "night": ("at night", "under the stars", "under the night sky"),
    "grid": ("on a grid", "in front of a grid", "on a blue grid"),
    "grey": ("on a grey background", "in front of a grey background", "on plain grey"),
    "black": ("on a black background", "in front of a black background", "on plain black"),
    "teal": ("on a teal background", "in front of a teal background", "on plain teal"),
}
GROUND_PHRASES = {
    "none": ("",),
    "grass": ("on the grass", "on green grass"),
    "sand": ("on the sand", "on a sandy ground"),
    "road": ("on the road", "on a grey road"),
}
OCCLUDER_PHRASES = {
    "none": ("",),
    "pillar": ("in front of a pillar", "near a pillar", "passing behind a pillar"),
    "tree": ("in front of a tree", "near a tree", "passing behind a tree"),
    "wall": ("in front of a wall", "near a brick wall", "passing behind a wall"),
}
# "a scene <sky phrase> with <objects>" phrasing.
SCENE_OPENERS = ("a scene",)
JOINERS = ("and", "with")

# Words the caption parser maps back to a background, ground or occluder. Several phrases share
# words ("blue" in "under a blue sky"), so each entry is the word sequence that decides.
SKY_KEYS = (
    (("sunny",), "day"), (("daytime",), "day"), (("blue", "sky"), "day"),
    (("sunset",), "sunset"), (("evening",), "sunset"),
    (("night",), "night"), (("stars",), "night"),
    (("grid",), "grid"),
    (("grey", "background"), "grey"), (("plain", "grey"), "grey"),
    (("black", "background"), "black"), (("plain", "black"), "black"),
    (("teal", "background"), "teal"), (("plain", "teal"), "teal"),
)
GROUND_KEYS = ((("grass",), "grass"), (("sand",), "sand"), (("sandy",), "sand"),
               (("road",), "road"))
OCCLUDER_KEYS = ((("pillar",), "pillar"), (("tree",), "tree"), (("wall",), "wall"))


def vocabulary():
    """Every word a caption can contain, sorted. The tokenizer and the docs use this list."""
    words = set()
    words.update(COUNT_WORDS.values())
    words.update(("an", "one"))  # "an orange ball", "one red ball"
    words.update(KINDS)
    words.update(PLURAL.values())
    words.update(COLOURS)
    words.update(SIZES)
    words.update(VERBS)
    words.update(JOINERS)
    for table in (SKY_PHRASES, GROUND_PHRASES, OCCLUDER_PHRASES):
        for phrases in table.values():
            for p in phrases:
                words.update(p.split())
    for p in SCENE_OPENERS:
        words.update(p.split())
    return sorted(words)
