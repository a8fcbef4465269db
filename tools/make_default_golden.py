"""Writes tests/data/default_golden.safetensors: what the PyTorch reference makes of the shipped
default model (models/default/model.safetensors), for the C engine to reproduce.

    /usr/bin/python3 tools/make_default_golden.py [--model PATH] [--out PATH]

Run it again whenever the shipped weights change (tests/engine/test_default_golden.c reads the
dump and fails when the model file's hash no longer matches the one recorded here).

The case: one stream, seed SEED, prompt PROMPT_A for chunks 0-2, a cut to PROMPT_B before chunk 3,
chunks 3-5 (so the window fills and slides past the anchor); stored are every chunk's final
latents (float32) and the decoded frames of chunks 0 and 5 (uint8). The weights are float16 in
the file; both sides compute in float32 from the same rounded values, so the figures differ
only by summation order.
"""
import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch  # noqa: E402

from flipbook_ref import st  # noqa: E402
from flipbook_ref.export import load_model  # noqa: E402
from flipbook_ref.taehv import StreamDecoder  # noqa: E402

SEED = 4242
PROMPT_A = "two red balls bouncing in front of a pillar at sunset"
PROMPT_B = "a blue box sliding on the road at night"
CHUNKS = 6
SWITCH_CHUNK = 3
DECODED_CHUNKS = (0, 5)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@torch.no_grad()
def make(model_path, out_path):
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = load_model(model_path)
    _, ctx_a = model.encode_prompt(PROMPT_A)
    _, ctx_b = model.encode_prompt(PROMPT_B)
    s = model.stream(ctx_a, seeds=[SEED])
    latents = []
    for c in range(CHUNKS):
        if c == SWITCH_CHUNK:
            s.set_prompt(ctx_b, "cut")
        latents.append(s.next_chunk())                   # [1, C, F, h, w]
        print("chunk %d/%d" % (c + 1, CHUNKS), file=sys.stderr)
    z = torch.cat(latents, 2).permute(0, 2, 1, 3, 4)     # [1, T, C, h, w]
    frames = StreamDecoder(model.vae).decode(z)[0]       # [T*4, 3, H, W] in [0, 1]
    per_chunk = frames.shape[0] // CHUNKS
    tensors = {"output.latents": torch.cat(latents, 2)[0].contiguous()}   # [C, T, h, w]
    for c in DECODED_CHUNKS:
        f = frames[c * per_chunk:(c + 1) * per_chunk]                    # [8, 3, H, W]
        tensors["output.c%d.frames_u8" % c] = torch.round(f.clamp(0, 1) * 255).to(torch.uint8) \
            .permute(0, 2, 3, 1).contiguous()                            # [8, H, W, 3]
    meta = {"model_sha256": file_sha256(model_path), "seed": str(SEED), "prompt_a": PROMPT_A,
            "prompt_b": PROMPT_B, "chunks": str(CHUNKS), "switch_chunk": str(SWITCH_CHUNK),
            "transition": "cut", "decoded_chunks": json.dumps(list(DECODED_CHUNKS))}
    st.save(out_path, tensors, meta)
    print("wrote %s" % out_path, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(HERE, "..", "models", "default",
                                                    "model.safetensors"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "data",
                                                  "default_golden.safetensors"))
    a = ap.parse_args()
    if not os.path.exists(a.model):
        sys.exit("make_default_golden: %s does not exist; train and export the default model "
                 "first (docs/training.md)" % a.model)
    make(a.model, a.out)


if __name__ == "__main__":
    main()
