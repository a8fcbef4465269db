"""Checkpoint conversion: published Wan2.1-based checkpoints -> one flipbook model file.

    torchzip   lazy reader of PyTorch .pt/.pth zip archives (restricted unpickler, no torch)
    sources    lazy tensors from .pt/.pth and .safetensors files, dtype casts, name cleanup
    families   expected tensors of the DiT, umT5 and TAEHV; configs inferred from shapes; LoRA
    presets    sampler/stream settings per family (self-forcing, causvid, longlive, wan-t2v)
    writer     streaming safetensors writer (header first, then tensor by tensor)
    cli        the command line (tools/convert.py)

Only numpy is required: tensors are read straight from the archives, one slab at a time, so
peak memory stays near the largest single tensor instead of a whole checkpoint. See
docs/converting.md.
"""


class ConvertError(Exception):
    """A problem with the inputs or the output that the user can fix; printed without a
    traceback."""
