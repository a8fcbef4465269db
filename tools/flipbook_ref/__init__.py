"""flipbook_ref: the PyTorch reference of flipbook's model family.

One definition of every component, used to make the golden test vectors the C engine is
checked against and to train the default model:

    config     the model config of docs/model-format.md
    ops        numeric primitives (RMSNorm, LayerNorm, GELU, sinusoid, RoPE, attention)
    dit        the Wan2.1 DiT: bidirectional, cached (chunk loop) and training forwards
    kvcache    anchor + window KV cache and the matching training attention plan
    sampler    flow-matching schedule and the stream chunk loop with prompt transitions
    training   flow-matching loss over whole clips (diffusion forcing, teacher forcing)
    t5         umT5 text encoder
    taehv      TAEHV decoder/encoder, parallel and streaming
    tokenizer  SentencePiece wrapper
    rng        counter-based noise, bit-exact with the engine
    export     flipbook model files
    st         safetensors reader/writer

Run with Debian's PyTorch interpreter: /usr/bin/python3 (see docs/reference-model.md).
"""
