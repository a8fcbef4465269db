"""Training pipeline of flipbook's default model (see docs/training.md).

    tools/train.sh [--stage ae|tokenizer|dit|all] [--minutes N] [--export] [--eval]

Stages, in order, each resumable from its state folder and reproducible from the master seed:
    ae         the TAEHV autoencoder on world clips rendered on the fly       (ae.py)
    tokenizer  the SentencePiece unigram model of the caption grammar         (tokenizer.py)
    dit        the umT5 text encoder + causal DiT with flow matching on cached
               latent clips, teacher-forced anchor + window attention         (dit.py)
then export (export.py) writes models/default/model.safetensors and evaluate.py samples a few
clips with the reference sampler and scores them with the world's scene parser.
"""
import os
import sys

# The reference model and the world are sibling packages under tools/.
_TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)
