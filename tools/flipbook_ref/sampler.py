"""Flow-matching sampler and the chunk loop of a stream (mirrors the runtime's sampler).

Scheduler (Self-Forcing's FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True) with
set_timesteps(num_train_timesteps)), all float32 as upstream:
    s_i       = linspace(1, 0, N+1)[:N]                 (torch.linspace, float32)
    sigma_i   = shift s_i / (1 + (shift-1) s_i)
    timestep_i = N sigma_i
    warp:     t_k = [timestep_0 .. timestep_{N-1}, 0][N - step_k]   (steps 1000,750,500,250 ->
              1000, 937.5, 833.3333, 625 for shift 5); otherwise t_k = step_k
    sigma(t)  = sigma_i with i = argmin_i |timestep_i - t|  (first index on ties)

Chunk loop (per chunk c of C frames, K steps):
    x = noise(seed, c, draw 0)
    for k < K:  v = DiT(x, t_k) over anchors + window + x;  x0 = x - sigma_k v  (float64 -> fp32)
                with guidance g != 1 (classifier-free): v = v_u + g (v - v_u) in float32, v_u
                the same call under the empty prompt's context (same cache, same x)
                if k < K-1:  x = (1 - sigma_{k+1}) x0 + sigma_{k+1} noise(seed, c, draw k+1)
    DiT(x0, context_t) once more: its keys/values (pre-RoPE) are committed to the cache.
The chunk's output is x0 of the last step.

Steering between chunks: new prompt with transition "cut" (next chunk uses it), "recache"
(LongLive: the window frames are re-run at context_t under the new prompt, attending to the
kept anchors and to each other, and their keys/values replace the window), or "blend"
(the encoder output is interpolated: the j-th chunk after the switch, j = 1..N, uses
old + a (new - old) with a = float32(j/N), and exactly new for j = N); pin (the last A committed frames become the anchors); new seed
(applies from the next chunk; the chunk counter keeps running); reset.
"""
import torch

from . import rng
from .kvcache import KVCache


class FlowMatchSchedule:
    def __init__(self, cfg):
        self.cfg = cfg
        N = cfg.num_train_timesteps
        s = torch.linspace(1.0, 0.0, N + 1)[:-1]
        shift = cfg.shift
        self.sigmas = shift * s / (1 + (shift - 1) * s)
        self.timesteps = self.sigmas * N
        if cfg.warp:
            ext = torch.cat([self.timesteps, torch.zeros(1)])
            idx = torch.tensor([N - int(st) for st in cfg.steps])
            self.steps = ext[idx]
        else:
            self.steps = torch.tensor([float(st) for st in cfg.steps], dtype=torch.float32)
        self.step_sigmas = torch.stack([self.sigma(t) for t in self.steps])
        self.context_t = float(cfg.context_t)

    def sigma(self, t):
        """sigma for a timestep: nearest entry of the table (float64 distances, as upstream)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        i = torch.argmin((self.timesteps.double() - t).abs())
        return self.sigmas[i]

    def add_noise(self, x0, eps, sigma):
        """(1 - sigma) x0 + sigma eps in float32."""
        return (1 - sigma) * x0 + sigma * eps

    def to_x0(self, x, flow, sigma):
        """x - sigma * flow computed in float64, rounded to float32 (as Self-Forcing does)."""
        return (x.double() - sigma.double() * flow.double()).float()


class Stream:
    """One (or a batch of lock-step) stream(s): the reference of the runtime's stream API.

    model: a Model (model.py) or any object with .dit and .cfg. context: raw encoder output
    [B, Lc, text_dim] (rows beyond the prompt's tokens already zero or absent). uncond: the
    encoder output of the empty prompt "" [1 or B, Lc', text_dim], needed when
    cfg.sampler.guidance is not 1."""

    def __init__(self, dit, cfg, context, seeds, record=False, uncond=None):
        self.dit, self.cfg = dit, cfg
        self.sched = FlowMatchSchedule(cfg.sampler)
        self.guidance = float(cfg.sampler.guidance)
        self.cross_u = None
        if self.guidance != 1.0:
            if uncond is None:
                raise ValueError("sampler.guidance %g needs the empty prompt's context (uncond)"
                                 % self.guidance)
            u = self._pad(uncond)
            self.cross_u = dit.prepare_context(u.expand(len(seeds), -1, -1))
        sc = cfg.stream
        self.cache = KVCache(len(dit.blocks), sc.anchor_frames, sc.window_frames, sc.positions)
        self.seeds = list(seeds)
        self.B = len(self.seeds)
        self.chunk = 0                # chunks generated so far (the RNG counter)
        self.frame = 0                # latent frames generated so far
        self.record = record
        self.trace = []
        self._set_context_now(context)
        self.blend = None             # (old, new, chunks done, N) while blending

    def _pad(self, context):
        L = self.dit.cfg.text_len
        if context.shape[1] < L:
            context = torch.cat([context, context.new_zeros(context.shape[0], L - context.shape[1],
                                                            context.shape[2])], 1)
        return context

    def _set_context_now(self, context):
        self.context = self._pad(context)
        self.cross = self.dit.prepare_context(self.context)

    # ---- controls ----------------------------------------------------------------------

    def set_prompt(self, context, transition="cut", blend_chunks=4):
        """Switches to a new prompt's encoder output. Returns the recache trace (or None)."""
        new = self._pad(context)
        if transition == "cut":
            self.blend = None
            self._set_context_now(new)
        elif transition == "recache":
            self.blend = None
            self._set_context_now(new)
            return self.recache()
        elif transition == "blend":
            if blend_chunks < 1:
                raise ValueError("blend needs at least one chunk")
            self.blend = (self.context, new, 0, blend_chunks)
        else:
            raise ValueError("unknown transition %r" % transition)
        return None

    @torch.no_grad()
    def recache(self):
        """Re-runs the window frames at context_t under the current prompt (LongLive)."""
        c = self.cache
        if c.n_window == 0:
            return None
        lat = c.w_lat
        first = c.w_idx[0]
        flow = self.dit.forward_cached(lat, self.sched.context_t, self.cross, c, first, recache=True)
        c.replace_window()
        return {"latents": lat, "frames": list(c.w_idx), "flow": flow}

    def set_seed(self, seeds):
        """New seeds (one per batch row) from the next chunk on; the chunk counter keeps running."""
        seeds = list(seeds)
        if len(seeds) != self.B:
            raise ValueError("need %d seeds, got %d" % (self.B, len(seeds)))
        self.seeds = seeds

    def pin(self):
        self.cache.pin()

    def reset(self):
        self.cache.reset()
        self.chunk = 0
        self.frame = 0

    @torch.no_grad()
    def set_anchor_latents(self, latents):
        """Anchors from latents (e.g. an image through the TAEHV encoder): one context_t pass in
        which the frames attend only to themselves, at positions 0..n-1 (frame indices 0..n-1
        in "absolute" mode); replaces the anchors and clears the window."""
        c = self.cache
        saved = (c.ak, c.av, c.wk, c.wv, c.a_idx, c.w_idx)
        c.ak = [None] * c.L
        c.av = [None] * c.L
        c.wk = [None] * c.L
        c.wv = [None] * c.L
        c.a_idx, c.w_idx = [], []
        try:
            self.dit.forward_cached(latents, self.sched.context_t, self.cross, c, 0, commit=True)
        except Exception:
            c.ak, c.av, c.wk, c.wv, c.a_idx, c.w_idx = saved
            raise
        c.set_anchors_from_staged(range(latents.shape[2]), latents)

    # ---- generation --------------------------------------------------------------------

    def noise_shape(self):
        sc = self.cfg.stream
        return (sc.chunk_frames, self.dit.cfg.in_dim, sc.latent_height, sc.latent_width)

    def draw(self, k):
        return rng.chunk_noise_torch(self.seeds, self.chunk, k, self.noise_shape())

    def _advance_blend(self):
        if self.blend is None:
            return
        old, new, j, N = self.blend
        j += 1
        if j >= N:
            self.context = new          # exactly the new prompt at the end (N = 1 is a cut)
        else:
            a = torch.tensor(j / N, dtype=torch.float32)
            self.context = old + a * (new - old)
        self.cross = self.dit.prepare_context(self.context)
        self.blend = None if j >= N else (old, new, j, N)

    @torch.no_grad()
    def next_chunk(self, noises=None):
        """Generates the next chunk; returns its clean latents [B, C, chunk_frames, H, W].

        noises: optional list of K injected noise tensors [B, C, F, H, W] (draw 0 .. K-1)
        instead of the counter RNG (used to replay upstream runs)."""
        self._advance_blend()
        sch = self.sched
        K = len(sch.steps)
        rec = {"chunk": self.chunk, "frame": self.frame, "steps": []} if self.record else None
        x = noises[0] if noises is not None else self.draw(0)
        if rec is not None:
            rec["context"] = self.context
            rec["positions"] = self.cache.positions(self.frame, x.shape[2])
            rec["past_frames"] = self.cache.a_idx + self.cache.w_idx
        for k in range(K):
            t, sigma = sch.steps[k], sch.step_sigmas[k]
            flow = self.dit.forward_cached(x, t, self.cross, self.cache, self.frame)
            st = {"x_in": x}
            if self.cross_u is not None:
                flow_u = self.dit.forward_cached(x, t, self.cross_u, self.cache, self.frame)
                st["flow_c"], st["flow_u"] = flow, flow_u
                flow = flow_u + self.guidance * (flow - flow_u)
            x0 = sch.to_x0(x, flow, sigma)
            st.update(flow=flow, x0=x0)
            if k < K - 1:
                eps = noises[k + 1] if noises is not None else self.draw(k + 1)
                st["eps"] = eps
                x = sch.add_noise(x0, eps, sch.step_sigmas[k + 1])
            if rec is not None:
                rec["steps"].append(st)
        ctx_flow = self.dit.forward_cached(x0, sch.context_t, self.cross, self.cache, self.frame, commit=True)
        self.cache.commit(self.frame, x0)
        if rec is not None:
            rec["ctx_flow"] = ctx_flow
            self.trace.append(rec)
        self.chunk += 1
        self.frame += x0.shape[2]
        return x0
