// flipbook web client: plays a live VP9 stream from flipbookd over WebSocket (flipbook.v1, see
// docs/protocol.md) with WebCodecs, and steers it.
//
// Pieces: Player (VideoDecoder -> latest decoded frame -> canvas on requestAnimationFrame),
// Connection (WebSocket with reconnect and backoff), ChunkClock and Timeline (where the engine's
// chunk boundaries fall among the frames on screen), and the page logic that ties them to the
// controls. On connecting the page asks the daemon what it serves (`info` -> `server`: source,
// model, size, example prompts, transitions, anchor image limits) and shows only the controls
// that apply. window.flipbookStats is a live object with the figures the page shows; the
// browser tests read it.

const CODEC_FALLBACK = 'vp09.00.31.08';
const COLOR_SPACE = { primaries: 'bt709', transfer: 'bt709', matrix: 'bt709', fullRange: false };
const HEADER_SIZE = 16;
const MAX_DECODE_QUEUE = 8;          // frames waiting in the decoder before we skip to a keyframe
const KEYFRAME_RETRY_MS = 1500;      // ask again when the asked-for keyframe does not come
const OWNER_KEY = 'flipbook.owner';  // sessionStorage: {session, token} of the stream we own
const MAX_PROMPT_BYTES = 2000;       // docs/protocol.md; the `server` message may say otherwise
const PART_BURST = 30;               // anchor image parts sent at once (the rate limit's burst is 40)
const PART_GAP_MS = 60;              // then one part per this many ms (the limit is 20 per second)
const TIMELINE_SECONDS = 8;          // frames shown on the chunk timeline

// ------------------------------------------------------------------------------------ stats

const stats = {
  state: 'connecting',   // connecting | idle | live | reconnecting | ended | error
  role: null,            // owner | viewer
  session: null,
  webcodecs: typeof VideoDecoder !== 'undefined',
  framesReceived: 0,
  framesDecoded: 0,
  framesPainted: 0,
  keyframes: 0,
  lastFrameNo: -1,       // last frame number received
  lastDecodedFrameNo: -1,
  lastPaintedFrameNo: -1,
  droppedServer: 0,      // gaps in frame numbers: frames the server skipped for us
  droppedLocal: 0,       // frames we discarded (waiting for a keyframe, decoder backlog)
  paintSkipped: 0,       // decoded frames replaced by a newer one before a paint
  decodeErrors: 0,
  keyframeRequests: 0,
  fpsPainted: 0,
  bitrateKbps: 0,
  latencyMs: null,       // paint time minus arrival baseline (see Player.paint)
  decodeMs: null,        // decode() -> output, smoothed
  e2e: { medianMs: null, p90Ms: null, n: 0 }, // from `start` sent to paint (owner who started)
  recentPaints: [],      // last 120 paints: {frameNo, pts (us), wallMs (Date.now() clock)}
  width: 0,
  height: 0,
  fps: 0,
  serverInfo: null,      // the `server` message (what the daemon serves)
  config: null,          // the last `config` message
  source: null,          // 'engine' | 'testpattern' once known
  server: null,          // last `stats` message
  lastAck: null,
  acks: [],              // the last 20 acks
  lastError: null,
  unknownWords: [],      // words of the current prompt the model does not know
  anchor: null,          // {state: 'sending'|'set'|'pinned'|'error', message, chunk, frame}
  anchorUpload: null,    // the last picture sent: {width, height, chars (base64), parts}
  chunkBoundaries: [],   // frame numbers where chunks start, among the frames on the timeline
  chunkClockExact: false,
  ended: null,           // {reason, code} once the session ended
  sessionLimit: null,    // the last session_limit error
  recording: null,       // last `recording` message
  reconnects: 0,
};
window.flipbookStats = stats;

// ------------------------------------------------------------------------------------ DOM

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $('conn'), connText: $('conn-text'), brandTag: $('brand-tag'),
  stage: $('stage'), canvas: $('screen'),
  overlay: $('overlay'), overlayTitle: $('overlay-title'), overlayText: $('overlay-text'),
  badgeRec: $('badge-rec'), badgePaused: $('badge-paused'), badgeViewer: $('badge-viewer'),
  strip: $('strip'), timeline: $('timeline'),
  sxChunk: $('sx-chunk'), sxChunkMs: $('sx-chunk-ms'), sxFps: $('sx-fps'), sxBuffer: $('sx-buffer'),
  sxKv: $('sx-kv'), sxPromptMs: $('sx-prompt-ms'), sxControl: $('sx-control'), slowdown: $('slowdown'),
  form: $('prompt-form'), prompt: $('prompt'), send: $('send'),
  transitionRow: $('transition-row'), transition: $('transition'),
  blendField: $('blend-field'), blendChunks: $('blend-chunks'),
  unknownWords: $('unknown-words'),
  suggestions: $('suggestions'), chips: $('chips'), viewerNote: $('viewer-note'),
  seed: $('seed'), seedApply: $('seed-apply'), pause: $('pause'), reset: $('reset'),
  record: $('record'), recResult: $('rec-result'), recLink: $('rec-link'),
  anchorCard: $('anchor-card'), anchorPin: $('anchor-pin'), anchorUpload: $('anchor-upload'),
  anchorFile: $('anchor-file'), anchorPreviewBox: $('anchor-preview-box'),
  anchorPreview: $('anchor-preview'), anchorStatus: $('anchor-status'),
  viewerLink: $('viewer-link'), copyLink: $('copy-link'),
  stFps: $('st-fps'), stLatency: $('st-latency'), stBitrate: $('st-bitrate'),
  stDropped: $('st-dropped'), stFrame: $('st-frame'), stSize: $('st-size'),
  stSource: $('st-source'), stServer: $('st-server'), stViewers: $('st-viewers'),
  toast: $('toast'),
};

let toastTimer = 0;
function toast(text, isError = false) {
  ui.toast.textContent = text;
  ui.toast.classList.toggle('error', isError);
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { ui.toast.hidden = true; }, isError ? 6000 : 3500);
}

function showOverlay(title, text, isError = false) {
  ui.overlayTitle.textContent = title;
  ui.overlayText.textContent = text;
  ui.overlay.classList.toggle('error', isError);
  ui.overlay.classList.remove('gone');
}
function hideOverlay() { ui.overlay.classList.add('gone'); }

function setConn(state, text) {
  stats.state = state;
  ui.conn.dataset.state = state;
  ui.connText.textContent = text;
}

function median(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------ player

class Player {
  constructor(canvas, onNeedKeyframe) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false, desynchronized: true });
    this.onNeedKeyframe = onNeedKeyframe;
    this.decoder = null;
    this.config = null;        // VideoDecoderConfig in use
    this.fps = 30;
    this.waitingForKey = true;
    this.pending = null;       // newest decoded VideoFrame not painted yet
    this.pendingFrameNo = undefined;
    this.meta = new Map();     // timestamp -> {frameNo, arrival, decodeStart}
    this.lastKeyRequest = 0;
    this.offsets = [];         // per-second minima of (arrival - pts) over the last 8 s
    this.lastArrival = null;   // arrival time and pts of the previous frame
    this.lastPts = 0;
    this.baseline = Infinity;  // their minimum: how early the fastest recent frame came
    this.startSentAt = null;   // performance.now() when this page sent `start`
    this.e2eSamples = [];
    this.paintTimes = [];
    this.byteLog = [];         // [time, bytes]
    this.paint = this.paint.bind(this);
    requestAnimationFrame(this.paint);
  }

  // Applies a `config` message. Returns false when this browser cannot decode it.
  async configure(msg) {
    const cfg = {
      codec: msg.codec || CODEC_FALLBACK,
      codedWidth: msg.width,
      codedHeight: msg.height,
      optimizeForLatency: true,
      colorSpace: msg.colorSpace || COLOR_SPACE,
    };
    this.fps = msg.fps || 30;
    stats.width = msg.width; stats.height = msg.height; stats.fps = this.fps;
    if (this.canvas.width !== msg.width || this.canvas.height !== msg.height) {
      this.canvas.width = msg.width;
      this.canvas.height = msg.height;
    }
    ui.stage.style.aspectRatio = `${msg.width} / ${msg.height}`;
    if (!stats.webcodecs) return false;
    try {
      const support = await VideoDecoder.isConfigSupported(cfg);
      if (!support.supported) return false;
    } catch (e) {
      return false;
    }
    this.config = cfg;
    this.resetDecoder();
    return true;
  }

  resetDecoder() {
    if (this.decoder && this.decoder.state !== 'closed') {
      try { this.decoder.close(); } catch (e) { /* already closed */ }
    }
    this.meta.clear();
    this.waitingForKey = true;
    this.offsets = [];
    this.baseline = Infinity;
    if (!this.config) { this.decoder = null; return; }
    this.decoder = new VideoDecoder({
      output: (frame) => this.onFrame(frame),
      error: (e) => this.onDecoderError(e),
    });
    this.decoder.configure(this.config);
  }

  // A new connection: the next frames start at a keyframe the server sends on join.
  restart() {
    stats.lastFrameNo = -1;    // frames missed while disconnected are not server drops
    this.waitingForKey = true;
    this.offsets = [];
    this.baseline = Infinity;
    if (this.decoder && this.decoder.state === 'configured') {
      this.decoder.reset();
      this.decoder.configure(this.config);
    }
    this.meta.clear();
  }

  requestKeyframe() {
    const now = performance.now();
    if (now - this.lastKeyRequest < KEYFRAME_RETRY_MS) return;
    this.lastKeyRequest = now;
    stats.keyframeRequests++;
    this.onNeedKeyframe();
  }

  // One binary message: 16-byte header (docs/protocol.md) + one VP9 frame.
  push(buf) {
    const now = performance.now();
    if (buf.byteLength < HEADER_SIZE) return;
    const view = new DataView(buf);
    const version = view.getUint8(0), type = view.getUint8(1), flags = view.getUint8(2);
    if (version !== 1 || type !== 1) return;   // a future frame type: not ours to decode
    const isKey = (flags & 1) !== 0;
    const frameNo = view.getUint32(4, true);
    const pts = Number(view.getBigInt64(8, true));

    stats.framesReceived++;
    if (isKey) stats.keyframes++;
    if (stats.lastFrameNo >= 0 && frameNo > stats.lastFrameNo + 1) {
      stats.droppedServer += frameNo - stats.lastFrameNo - 1;
      // The server skips to a keyframe; a delta right after a gap cannot be decoded.
      if (!isKey) this.waitingForKey = true;
    }
    stats.lastFrameNo = frameNo;
    this.byteLog.push([now, buf.byteLength]);
    // A pause (or a stall) shifts the timestamps against the clock: this frame came much later
    // than its timestamp says. Start the latency baseline afresh instead of reporting the pause.
    if (this.lastArrival != null && (now - this.lastArrival) - (pts - this.lastPts) / 1000 > 250) {
      this.offsets = [];
      stats.latencyMs = null;
    }
    this.lastArrival = now;
    this.lastPts = pts;
    this.noteOffset(now, now - pts / 1000);

    const dec = this.decoder;
    if (!dec || dec.state !== 'configured') { stats.droppedLocal++; return; }
    if (this.waitingForKey) {
      if (!isKey) { stats.droppedLocal++; this.requestKeyframe(); return; }
      this.waitingForKey = false;
    } else if (!isKey && dec.decodeQueueSize > MAX_DECODE_QUEUE) {
      // The decoder is not keeping up: skip to the next keyframe rather than fall behind.
      stats.droppedLocal++;
      this.waitingForKey = true;
      this.requestKeyframe();
      return;
    }
    this.meta.set(pts, { frameNo, arrival: now });
    if (this.meta.size > 256) this.meta.delete(this.meta.keys().next().value);
    try {
      dec.decode(new EncodedVideoChunk({
        type: isKey ? 'key' : 'delta',
        timestamp: pts,
        duration: Math.round(1e6 / this.fps),
        data: new Uint8Array(buf, HEADER_SIZE),
      }));
    } catch (e) {
      this.onDecoderError(e);
    }
  }

  // Sliding minimum of (arrival - pts): a pause, a reset or a slow generator shifts the
  // timestamps against the clock, so an all-time minimum would drift; 8 s of history is enough
  // to hold the fastest recent frame.
  noteOffset(now, off) {
    const sec = Math.floor(now / 1000);
    const last = this.offsets[this.offsets.length - 1];
    if (last && last[0] === sec) last[1] = Math.min(last[1], off);
    else this.offsets.push([sec, off]);
    while (this.offsets.length && this.offsets[0][0] < sec - 8) this.offsets.shift();
    this.baseline = Math.min(...this.offsets.map((o) => o[1]));
  }

  onFrame(frame) {
    stats.framesDecoded++;
    const m = this.meta.get(frame.timestamp);
    if (m) {
      this.meta.delete(frame.timestamp);
      stats.lastDecodedFrameNo = m.frameNo;
      const d = performance.now() - m.arrival;
      stats.decodeMs = stats.decodeMs == null ? d : stats.decodeMs * 0.9 + d * 0.1;
    }
    if (this.pending) { this.pending.close(); stats.paintSkipped++; }
    this.pending = frame;   // latest wins: only the newest frame is ever painted
    this.pendingFrameNo = m ? m.frameNo : undefined;
  }

  onDecoderError(e) {
    stats.decodeErrors++;
    stats.lastError = { code: 'decoder', message: String(e && e.message || e) };
    console.warn('flipbook: decoder error, resetting:', e);
    if (this.pending) { this.pending.close(); this.pending = null; }
    this.resetDecoder();
    this.lastKeyRequest = 0;
    this.requestKeyframe();
  }

  paint(now) {
    requestAnimationFrame(this.paint);
    const frame = this.pending;
    if (frame) {
      this.pending = null;
      const w = frame.displayWidth, h = frame.displayHeight;
      if (this.canvas.width !== w || this.canvas.height !== h) {
        this.canvas.width = w; this.canvas.height = h;
      }
      this.ctx.drawImage(frame, 0, 0, w, h);
      const pts = frame.timestamp;
      const frameNo = this.pendingFrameNo;
      frame.close();
      const t = performance.now();
      stats.framesPainted++;
      if (frameNo !== undefined) stats.lastPaintedFrameNo = frameNo;
      stats.recentPaints.push({ frameNo, pts, wallMs: performance.timeOrigin + t });
      if (stats.recentPaints.length > 120) stats.recentPaints.shift();
      this.paintTimes.push(t);
      // Latency estimate: how much later than the fastest recent frame this one reached the
      // screen (queueing + decode + paint). Loopback transport adds ~nothing on top.
      const lat = t - pts / 1000 - this.baseline;
      if (Number.isFinite(lat)) {
        stats.latencyMs = stats.latencyMs == null ? lat : stats.latencyMs * 0.9 + lat * 0.1;
      }
      // End to end for the page that started the stream: the frame was produced `pts` after
      // the session's first frame, which the server made after our `start` arrived; so this
      // is an upper bound of produce -> paint.
      if (this.startSentAt != null) {
        this.e2eSamples.push(t - (this.startSentAt + pts / 1000));
        if (this.e2eSamples.length > 300) this.e2eSamples.shift();
      }
    }
    void now;
  }

  // Once a second: rates over the last second.
  tick() {
    const now = performance.now();
    while (this.paintTimes.length && this.paintTimes[0] < now - 1000) this.paintTimes.shift();
    stats.fpsPainted = this.paintTimes.length;
    while (this.byteLog.length && this.byteLog[0][0] < now - 1000) this.byteLog.shift();
    stats.bitrateKbps = Math.round(this.byteLog.reduce((s, b) => s + b[1], 0) * 8 / 1000);
    if (this.e2eSamples.length) {
      const s = [...this.e2eSamples].sort((a, b) => a - b);
      stats.e2e = { medianMs: median(s, 0.5), p90Ms: median(s, 0.9), n: s.length };
    }
  }

  decodeQueue() { return this.decoder ? this.decoder.decodeQueueSize : 0; }
}

// ------------------------------------------------------------------------------------ connection

class Connection {
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = 0;
    this.stopped = false;
    this.outbox = [];
  }

  open() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url, 'flipbook.v1');
    } catch (e) {
      this.h.onFatal(`Cannot open ${this.url}: ${e.message}`);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      const queued = this.outbox; this.outbox = [];
      this.h.onOpen();
      for (const m of queued) this.send(m);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (msg && typeof msg.type === 'string') this.h.onMessage(msg);
      } else {
        this.h.onVideo(ev.data);
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.h.onClose(ev);
      if (!this.stopped) this.scheduleReconnect();
    };
    ws.onerror = () => { /* onclose follows and decides */ };
  }

  scheduleReconnect() {
    // 0.5 s, 1, 2, 4, 8, then every 10 s; jitter keeps many viewers from returning at once.
    const base = Math.min(10000, 500 * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt++;
    stats.reconnects++;
    this.h.onReconnecting(delay);
    this.timer = setTimeout(() => this.open(), delay);
  }

  connected() { this.attempt = 0; }

  isOpen() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  send(obj) {
    if (this.isOpen()) { this.ws.send(JSON.stringify(obj)); return true; }
    if (obj.type === 'start' || obj.type === 'join') this.outbox.push(obj);
    return false;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
  }
}


// ------------------------------------------------------------------------------------ chunks

// Where chunk boundaries fall in the frame numbers. The engine makes `n` frames a chunk (the
// first chunk after a start or reset may be shorter: the decoder trims its warm-up), and frames
// are numbered in the order they are sent, so past the first chunk chunk c starts at frame
// offset + c * n for one offset per run of the stream. Acks of prompt/seed/anchor/reset give a
// chunk's first frame exactly; each `stats` message says which chunk its newest frame belongs
// to, which bounds the offset (the two figures are read a moment apart, so allow one frame).
// A contradiction (a pause repeats frames, a reset restarts the count) starts a new estimate.
class ChunkClock {
  constructor() { this.n = 0; this.clear(); }

  clear() {
    this.lo = -Infinity;   // offset bounds: chunk c >= 1 starts at offset + c * n
    this.hi = Infinity;
    this.restartFrame = null;   // first frame of chunk 0 of the current run, when known
  }

  setChunkFrames(n) {
    if (n > 0 && n !== this.n) { this.n = n; this.clear(); }
  }

  narrow(lo, hi) {
    const nlo = Math.max(this.lo, lo), nhi = Math.min(this.hi, hi);
    if (nlo > nhi) { this.lo = lo; this.hi = hi; } else { this.lo = nlo; this.hi = nhi; }
  }

  // Chunk `chunk` starts at frame `frame` (from an ack).
  starts(chunk, frame) {
    if (!this.n || !Number.isInteger(chunk) || !Number.isInteger(frame)) return;
    if (chunk === 0) { this.clear(); this.restartFrame = frame; return; }
    this.lo = this.hi = frame - chunk * this.n;
  }

  // The frame `frame` (or the one after it) belongs to chunk `chunk` (from stats).
  contains(chunk, frame) {
    if (!this.n || !Number.isInteger(chunk) || !Number.isInteger(frame) || chunk < 1) return;
    this.narrow(frame - (chunk + 1) * this.n + 1, frame + 1 - chunk * this.n);
  }

  exact() { return Number.isFinite(this.lo) && this.lo === this.hi; }

  // Chunk start frames within [from, to].
  boundaries(from, to) {
    const out = [];
    if (this.restartFrame != null && this.restartFrame >= from && this.restartFrame <= to) {
      out.push(this.restartFrame);
    }
    if (!this.n || !Number.isFinite(this.lo) || !Number.isFinite(this.hi)) return out;
    const off = Math.round((this.lo + this.hi) / 2);
    for (let k = Math.max(1, Math.ceil((from - off) / this.n)); off + k * this.n <= to; k++) {
      const f = off + k * this.n;
      if (this.restartFrame == null || f > this.restartFrame) out.push(f);
    }
    return out.sort((a, b) => a - b);
  }
}

// The strip under the video: the last few seconds of frames, a tick where each chunk starts,
// and a marker where a control took effect.
class Timeline {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.marks = [];          // {frame, label}
    this.drawn = null;
  }

  mark(frame, label) {
    if (!Number.isInteger(frame)) return;
    this.marks.push({ frame, label });
    if (this.marks.length > 16) this.marks.shift();
  }

  clear() { this.marks = []; this.drawn = null; }

  draw(clock, latest, fps) {
    const key = `${latest}|${clock.lo}|${clock.hi}|${clock.restartFrame}|${this.marks.length}`;
    if (key === this.drawn) return;
    this.drawn = key;
    const c = this.canvas, ctx = this.ctx;
    const cssW = Math.max(200, Math.round(c.clientWidth || 640));
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(cssW * dpr)) { c.width = Math.round(cssW * dpr); c.height = Math.round(34 * dpr); }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const W = cssW, H = 34;
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = 'rgba(255,255,255,0.05)';
    ctx.fillRect(0, 14, W, 12);
    if (latest < 0) return;
    const span = Math.max(16, Math.round((fps || 16) * TIMELINE_SECONDS));
    const from = latest - span + 1;
    const x = (f) => ((f - from) / span) * W;
    ctx.fillStyle = 'rgba(122,162,247,0.28)';
    ctx.fillRect(Math.max(0, x(Math.max(from, 0))), 14, W - Math.max(0, x(Math.max(from, 0))), 12);
    const ticks = clock.boundaries(Math.max(0, from), latest);
    stats.chunkBoundaries = ticks;
    stats.chunkClockExact = clock.exact();
    ctx.strokeStyle = clock.exact() ? 'rgba(228,231,236,0.85)' : 'rgba(228,231,236,0.4)';
    ctx.fillStyle = 'rgba(138,147,163,1)';
    ctx.font = '10px ui-monospace, monospace';
    ctx.lineWidth = 1;
    let lastLabelX = -Infinity;
    for (const f of ticks) {
      const px = Math.round(x(f)) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, 11); ctx.lineTo(px, 29); ctx.stroke();
      if (px - lastLabelX > 34 && px + 24 < W && clock.n) {
        const idx = clock.restartFrame != null && f === clock.restartFrame ? 0
          : Math.round((f - Math.round((clock.lo + clock.hi) / 2)) / clock.n);
        if (Number.isFinite(idx)) ctx.fillText(`#${idx}`, px + 3, 10);
        lastLabelX = px;
      }
    }
    for (const m of this.marks) {
      if (m.frame < from || m.frame > latest + span) continue;
      const px = Math.min(W - 2, Math.round(x(m.frame)));
      ctx.fillStyle = '#e2b86b';
      ctx.beginPath(); ctx.moveTo(px - 4, 34); ctx.lineTo(px + 4, 34); ctx.lineTo(px, 27); ctx.fill();
      ctx.fillRect(px - 1, 14, 2, 12);
      ctx.fillText(m.label, Math.min(px + 5, W - 6 * m.label.length), 33);
    }
  }
}

// ------------------------------------------------------------------------------------ page

const params = new URLSearchParams(location.search);
const viewerSession = params.get('session');
const mode = viewerSession ? 'viewer' : 'owner';
let owner = null;                 // {session, token} while we own a stream
let inSession = false;            // hello received on the current connection
let sessionEnded = false;
let paused = false;
let recording = false;
let nextId = 1;
let infoId = 0;                   // id of our `info` request (an older daemon refuses it)
let anchorBusy = false;
let debugPartChars = 0;           // tests: smaller anchor image parts (see flipbookDebug)
let justStarted = false;          // our `start` was answered: chunk 0 begins at frame 0
const pendingIds = new Map();     // id -> what it was, for ack/error messages
const chunkClock = new ChunkClock();
const timeline = new Timeline(ui.timeline);

if (mode === 'owner') {
  try { owner = JSON.parse(sessionStorage.getItem(OWNER_KEY) || 'null'); } catch (e) { owner = null; }
}

const wsUrl = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
const player = new Player(ui.canvas, () => conn.send({ type: 'keyframe' }));

function send(msg, what) {
  const id = nextId++;
  msg.id = id;
  if (what) pendingIds.set(id, what);
  if (!conn.send(msg)) toast('Not connected; try again in a moment.', true);
  return id;
}

function rememberOwner(session, token) {
  owner = { session, token };
  try { sessionStorage.setItem(OWNER_KEY, JSON.stringify(owner)); } catch (e) { /* private mode */ }
}
function forgetOwner() {
  owner = null;
  try { sessionStorage.removeItem(OWNER_KEY); } catch (e) { /* private mode */ }
}

// What the session (or, before one, the server) offers: the config of a running session wins.
function anchorSpec() {
  if (stats.config && stats.config.source) return stats.config.anchorImage || null;
  return stats.serverInfo ? stats.serverInfo.anchorImage || null : null;
}

// Shows the controls that apply to the source: body[data-source] and body[data-anchor] drive
// the CSS (the test pattern has no chunks, transitions or anchors).
function applySource() {
  const src = (stats.config && stats.config.source) || (stats.serverInfo && stats.serverInfo.source) || null;
  stats.source = src;
  if (src) document.body.dataset.source = src; else delete document.body.dataset.source;
  if (src === 'engine' && anchorSpec()) document.body.dataset.anchor = ''; else delete document.body.dataset.anchor;
  const info = stats.serverInfo;
  const cfg = stats.config;
  const model = (cfg && cfg.model) || (info && info.model);
  const w = (cfg && cfg.width) || (info && info.width), h = (cfg && cfg.height) || (info && info.height);
  const fps = (cfg && cfg.fps) || (info && info.fps);
  if (src === 'engine') {
    ui.brandTag.textContent = `${model || 'model'} · ${w}×${h} at ${fps} fps`;
    ui.stSource.textContent = `engine: ${model || '?'}`;
  } else if (src === 'testpattern') {
    ui.brandTag.textContent = `test pattern · ${w}×${h} at ${fps} fps`;
    ui.stSource.textContent = 'test pattern';
  }
  chunkClock.setChunkFrames((cfg && cfg.chunkFrames) || (info && info.chunkFrames) || 0);
}

function applyServerInfo(msg) {
  stats.serverInfo = msg;
  // Suggested prompts: the model's own examples (none for the test pattern).
  ui.chips.replaceChildren();
  const prompts = Array.isArray(msg.prompts) ? msg.prompts.filter((p) => typeof p === 'string' && p.trim()) : [];
  for (const p of prompts.slice(0, 12)) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'chip';
    b.textContent = p;
    b.title = inSession ? 'Use this prompt' : 'Start with this prompt';
    b.addEventListener('click', () => {
      ui.prompt.value = p;
      ui.prompt.focus();
    });
    ui.chips.appendChild(b);
  }
  ui.suggestions.hidden = prompts.length === 0;
  const max = Number.isInteger(msg.maxPromptBytes) && msg.maxPromptBytes > 0 ? msg.maxPromptBytes : MAX_PROMPT_BYTES;
  ui.prompt.maxLength = max;
  // Transitions the source accepts; the blend length's bounds.
  const accepted = Array.isArray(msg.transitions) ? msg.transitions : ['cut'];
  for (const opt of ui.transition.options) opt.hidden = opt.disabled = !accepted.includes(opt.value);
  if (!accepted.includes(ui.transition.value)) ui.transition.value = accepted[0] || 'cut';
  if (msg.blendChunks) {
    ui.blendChunks.min = msg.blendChunks.min;
    ui.blendChunks.max = msg.blendChunks.max;
    if (!ui.blendChunks.dataset.touched) ui.blendChunks.value = msg.blendChunks.default;
  }
  applySource();
  updateTransitionRow();
}

function updateTransitionRow() {
  ui.blendField.hidden = ui.transition.value !== 'blend';
}

function setUnknownWords(words) {
  stats.unknownWords = Array.isArray(words) ? words : [];
  if (stats.unknownWords.length) {
    ui.unknownWords.textContent = `The model does not know ${stats.unknownWords.length === 1 ? 'this word' : 'these words'}` +
      ` and reads past ${stats.unknownWords.length === 1 ? 'it' : 'them'}: ${stats.unknownWords.join(', ')}`;
    ui.unknownWords.hidden = false;
  } else {
    ui.unknownWords.hidden = true;
    ui.unknownWords.textContent = '';
  }
}

function setAnchorStatus(state, message, extra = {}) {
  stats.anchor = { state, message, ...extra };
  ui.anchorStatus.textContent = message;
  ui.anchorStatus.dataset.state = state;
}

function updateControls() {
  const steer = mode === 'owner' && inSession;
  ui.send.textContent = inSession ? 'Send' : 'Start';
  ui.send.disabled = !conn.isOpen() || (mode === 'viewer');
  for (const el of [ui.seedApply, ui.pause, ui.reset, ui.record, ui.anchorPin]) el.disabled = !steer;
  ui.anchorUpload.disabled = !steer || anchorBusy;
  ui.transition.disabled = ui.blendChunks.disabled = mode === 'viewer';
  ui.pause.textContent = paused ? 'Resume' : 'Pause';
  ui.pause.setAttribute('aria-pressed', paused ? 'true' : 'false');
  ui.record.textContent = recording ? 'Stop recording' : 'Record';
  ui.record.classList.toggle('active', recording);
  ui.record.setAttribute('aria-pressed', recording ? 'true' : 'false');
  ui.badgeRec.hidden = !recording;
  ui.badgePaused.hidden = !paused;
  ui.copyLink.disabled = !ui.viewerLink.value;
  ui.strip.hidden = !(stats.source === 'engine' && inSession);
}

function noWebCodecsMessage() {
  const port = location.port || 80;
  const local = `http://localhost:${port}/`;
  if (!window.isSecureContext) {
    return ['This page cannot decode video here',
      `Browsers only offer WebCodecs (VideoDecoder) on secure pages. Open ${local} on the ` +
      `machine running flipbookd (from elsewhere, tunnel it: ssh -L ${port}:localhost:${port} ` +
      `${location.hostname}), or serve flipbookd over https.`];
  }
  return ['This browser cannot decode the stream',
    'It has no WebCodecs VideoDecoder with VP9. Use a recent Chrome, Edge or Firefox.'];
}

function startOrSteer(text) {
  text = text.trim();
  if (!text) return;
  if (mode !== 'owner') return;
  const limit = ui.prompt.maxLength > 0 ? ui.prompt.maxLength : MAX_PROMPT_BYTES;
  if (new TextEncoder().encode(text).length > limit) {
    toast(`The prompt is longer than ${limit} bytes; shorten it.`, true);
    return;
  }
  if (!inSession) {
    const msg = { type: 'start', prompt: text };
    const seed = ui.seed.value.trim();
    if (seed !== '') {
      if (!/^\d+$/.test(seed)) { toast('The seed is a whole number of 0 or more.', true); return; }
      msg.seed = Number(seed);
    }
    player.startSentAt = performance.now();
    stats.ended = null;
    stats.sessionLimit = null;
    timeline.clear();
    chunkClock.clear();
    send(msg, 'start');
    showOverlay('Starting…', 'Waiting for the first frame.');
  } else {
    const msg = { type: 'prompt', text };
    if (stats.source === 'engine') {
      msg.transition = ui.transition.value;
      if (msg.transition === 'blend') {
        const n = Number(ui.blendChunks.value);
        const lo = Number(ui.blendChunks.min) || 1, hi = Number(ui.blendChunks.max) || 64;
        if (!Number.isInteger(n) || n < lo || n > hi) {
          toast(`A blend lasts ${lo} to ${hi} chunks.`, true);
          ui.blendChunks.focus();
          return;
        }
        msg.chunks = n;
      }
    }
    send(msg, 'prompt');
  }
  ui.prompt.select();
}

// "from chunk 12 (frame 96)" for an ack; engine acks carry the chunk.
function whereFrom(msg) {
  if (Number.isInteger(msg.chunk) && Number.isInteger(msg.frame)) return `from chunk ${msg.chunk} (frame ${msg.frame})`;
  if (Number.isInteger(msg.frame)) return `from frame ${msg.frame}`;
  return '';
}

function onAck(msg) {
  stats.lastAck = msg;
  stats.acks.push(msg);
  if (stats.acks.length > 20) stats.acks.shift();
  const what = pendingIds.get(msg.id) || msg.of;
  pendingIds.delete(msg.id);
  const from = whereFrom(msg);
  // Where chunks start: prompt/seed/anchor/reset acks name the first chunk made under the
  // change; pause/resume/record name the chunk their frame belongs to.
  if (Number.isInteger(msg.chunk)) {
    if (['prompt', 'seed', 'anchor', 'reset'].includes(msg.of)) chunkClock.starts(msg.chunk, msg.frame);
    else chunkClock.contains(msg.chunk, msg.frame);
  }
  switch (msg.of) {
    case 'prompt':
      setUnknownWords(msg.unknownWords);
      timeline.mark(msg.frame, msg.transition && msg.transition !== 'cut' ? msg.transition : 'prompt');
      toast(`Prompt${msg.transition && stats.source === 'engine' ? ` (${msg.transition})` : ''} applied ${from}.`);
      break;
    case 'seed':
      timeline.mark(msg.frame, 'seed');
      toast(`Seed ${msg.seed ?? ui.seed.value} ${from}.`);
      break;
    case 'pause': paused = true; player.startSentAt = null; toast('Paused.'); break;
    case 'resume': paused = false; toast('Resumed.'); break;
    case 'reset':
      timeline.mark(msg.frame, 'reset');
      toast(`Restarted from the prompt and seed ${from}.`);
      break;
    case 'anchor':
      anchorBusy = false;
      timeline.mark(msg.frame, what === 'anchor image' ? 'image' : 'pin');
      if (what === 'anchor image') setAnchorStatus('set', `Anchor image set: it steers the stream ${from}.`, { chunk: msg.chunk, frame: msg.frame });
      else if (what === 'anchor clear') setAnchorStatus('cleared', `Anchor cleared: the stream restarted ${from}.`, { chunk: msg.chunk, frame: msg.frame });
      else setAnchorStatus('pinned', `Pinned: the newest chunk is the anchor ${from}.`, { chunk: msg.chunk, frame: msg.frame });
      break;
    default:
      break;   // record: the `recording` message says more; keyframe, stop: nothing to show
  }
}

function onError(msg) {
  stats.lastError = msg;
  const what = pendingIds.get(msg.id);
  pendingIds.delete(msg.id);
  if (msg.id != null && msg.id === infoId) return;   // an older daemon without `info`
  if (what === 'anchor image' || what === 'anchor pin' || what === 'anchor clear') {
    anchorBusy = false;
    setAnchorStatus('error', `${what === 'anchor pin' ? 'Cannot pin' : 'Refused'}: ${msg.message || msg.code}`, { code: msg.code });
    return;
  }
  if (msg.code === 'no_session' || msg.code === 'bad_token') {
    if (mode === 'viewer') {
      sessionEnded = true;
      setConn('ended', 'Not live');
      showOverlay('This stream is not live',
        `It has ended, or the link is wrong. Start your own at ${location.origin}/`);
      conn.stop();
    } else if (owner) {
      forgetOwner();
      setConn('idle', 'Connected');
      showOverlay('Your previous stream has ended', 'Type a prompt below to start a new one.');
    } else {
      toast(`${msg.message || msg.code}`, true);
    }
  } else if (msg.code === 'session_limit') {
    stats.sessionLimit = msg;
    player.startSentAt = null;
    setConn('idle', 'Server busy');
    showOverlay('The server is busy', `${msg.message || 'No room for another stream right now.'} ` +
      'Try again in a while; your prompt is kept.', true);
  } else if (what === 'start') {
    showOverlay('The stream did not start', msg.message || msg.code, true);
  } else {
    toast(`${what ? what + ': ' : ''}${msg.message || msg.code}`, true);
  }
}

// Reasons the daemon gives in `end`, said for people.
function endText(reason) {
  if (!reason) return 'The session is over.';
  if (reason === 'shutdown') return 'The server is shutting down.';
  if (reason === 'stopped by the owner') return 'Its owner stopped it.';
  if (/^no owner for/.test(reason)) return `Its owner left (${reason}).`;
  if (/failed/.test(reason)) return `It failed: ${reason}`;
  return `Reason: ${reason}`;
}

const conn = new Connection(wsUrl, {
  onOpen() {
    inSession = false;
    player.restart();
    infoId = nextId++;
    conn.send({ type: 'info', id: infoId });
    if (mode === 'viewer') {
      conn.send({ type: 'join', session: viewerSession });
      setConn('connecting', 'Joining…');
    } else if (owner) {
      conn.send({ type: 'join', session: owner.session, token: owner.token });
      setConn('connecting', 'Rejoining…');
    } else {
      conn.connected();
      setConn('idle', 'Connected');
      if (!stats.webcodecs) {
        // keep the explanation on screen
      } else if (sessionEnded) {
        // keep the reason on screen
      } else {
        showOverlay('Nothing playing yet', 'Describe a scene below and press Enter to start an endless stream.');
      }
    }
    updateControls();
  },

  onMessage(msg) {
    switch (msg.type) {
      case 'server':
        applyServerInfo(msg);
        break;
      case 'hello': {
        inSession = true;
        sessionEnded = false;
        stats.ended = null;
        conn.connected();
        stats.role = msg.role;
        stats.session = msg.session;
        if (msg.role === 'owner' && msg.token) rememberOwner(msg.session, msg.token);
        justStarted = pendingIds.size > 0 && [...pendingIds.values()].includes('start');
        for (const [id, w] of pendingIds) if (w === 'start') pendingIds.delete(id);
        const link = new URL(msg.viewer || `/?session=${encodeURIComponent(msg.session)}`, location.href);
        ui.viewerLink.value = link.href;
        setConn('live', msg.role === 'owner' ? 'Live' : 'Watching');
        setUnknownWords(msg.unknownWords);   // absent: none (or, on a join, not known)
        if (stats.webcodecs) showOverlay('Connected', 'Waiting for a keyframe…');
        break;
      }
      case 'config':
        stats.config = msg;
        applySource();
        if (justStarted) { chunkClock.starts(0, 0); justStarted = false; }
        player.configure(msg).then((ok) => {
          if (!ok && stats.webcodecs) {
            showOverlay('Cannot play this stream', `This browser cannot decode ${msg.codec} at ${msg.width}×${msg.height}.`, true);
          }
        });
        break;
      case 'stats':
        stats.server = msg;
        if (typeof msg.paused === 'boolean') paused = msg.paused;
        if (paused) player.startSentAt = null;   // timestamps no longer track the clock
        if (typeof msg.recording === 'boolean') recording = msg.recording;
        if (Number.isInteger(msg.chunk) && Number.isInteger(msg.frame)) chunkClock.contains(msg.chunk, msg.frame);
        showEngineStats(msg);
        break;
      case 'ack':
        onAck(msg);
        break;
      case 'recording':
        stats.recording = msg;
        if (msg.state === 'started') {
          recording = true;
          ui.recResult.hidden = true;
          toast('Recording on the server…');
        } else if (msg.state === 'stopped') {
          recording = false;
          const file = /\.webm$/.test(msg.name || '') ? msg.name : `${msg.name}.webm`;
          const url = msg.url || `/recordings/${file}`;
          ui.recLink.href = url;
          ui.recLink.textContent = url.split('/').pop();
          ui.recResult.hidden = false;
          toast('Recording saved.');
        } else if (msg.state === 'failed') {
          recording = false;
          toast(`Recording failed: ${msg.message || 'unknown error'}`, true);
        }
        break;
      case 'error':
        onError(msg);
        break;
      case 'end':
        inSession = false;
        sessionEnded = true;
        stats.ended = { reason: msg.reason || '', code: null };
        paused = false;
        recording = false;
        anchorBusy = false;
        if (mode === 'owner') forgetOwner();
        setConn('ended', 'Ended');
        showOverlay('The stream has ended', `${endText(msg.reason)} ` + (mode === 'viewer'
          ? `Start your own at ${location.origin}/` : 'Type a prompt below to start a new one.'),
          /failed/.test(msg.reason || ''));
        if (mode === 'viewer') conn.stop();
        break;
      default:
        break;   // unknown message types are ignored (newer server)
    }
    updateControls();
  },

  onVideo(buf) {
    player.push(buf);
    if (stats.framesPainted > 0 && !ui.overlay.classList.contains('gone') && stats.webcodecs && inSession) hideOverlay();
  },

  onClose(ev) {
    inSession = false;
    if (stats.ended && stats.ended.code == null) stats.ended.code = ev.code;
    if (ev.code === 1008) toast(`The server dropped this connection: ${ev.reason || 'too slow'}`, true);
    updateControls();
  },

  onReconnecting(delay) {
    if (sessionEnded && mode === 'viewer') return;
    setConn('reconnecting', `Reconnecting in ${Math.max(1, Math.round(delay / 1000))} s…`);
  },

  onFatal(text) {
    setConn('error', 'Error');
    showOverlay('Cannot connect', text, true);
  },
});

// ---- anchor image: picture -> model-sized RGBA -> base64 in parts

function base64Of(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

async function uploadAnchor(file) {
  const spec = anchorSpec();
  if (!spec || !inSession || mode !== 'owner') return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (e) {
    setAnchorStatus('error', `Cannot read ${file.name || 'this file'} as a picture.`);
    return;
  }
  // Scale to cover the model's frame and crop the overflow evenly: the model takes exactly
  // width x height pixels, and stretching would distort the picture.
  const c = ui.anchorPreview;
  c.width = spec.width;
  c.height = spec.height;
  const ctx = c.getContext('2d', { willReadFrequently: true });
  const s = Math.max(spec.width / bitmap.width, spec.height / bitmap.height);
  const w = bitmap.width * s, h = bitmap.height * s;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, spec.width, spec.height);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, (spec.width - w) / 2, (spec.height - h) / 2, w, h);
  bitmap.close();
  ui.anchorPreviewBox.hidden = false;
  const rgba = ctx.getImageData(0, 0, spec.width, spec.height).data;
  const b64 = base64Of(new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.byteLength));
  const limit = Math.max(1000, spec.partChars || 60000);
  const partChars = debugPartChars > 0 ? Math.min(debugPartChars, limit) : limit;
  const parts = Math.max(1, Math.ceil(b64.length / partChars));
  stats.anchorUpload = { width: spec.width, height: spec.height, chars: b64.length, parts };
  const id = nextId++;
  pendingIds.set(id, 'anchor image');
  anchorBusy = true;
  updateControls();
  setAnchorStatus('sending', `Sending ${spec.width}×${spec.height} (${parts} part${parts === 1 ? '' : 's'})…`);
  for (let i = 0; i < parts; i++) {
    const msg = { type: 'anchor', action: 'image', width: spec.width, height: spec.height,
      format: 'rgba32', data: b64.slice(i * partChars, (i + 1) * partChars), id };
    if (parts > 1) { msg.part = i; msg.parts = parts; }
    if (!conn.send(msg)) {
      anchorBusy = false;
      setAnchorStatus('error', 'The connection dropped while sending; try again.');
      updateControls();
      return;
    }
    if (i + 1 >= PART_BURST && i + 1 < parts) await sleep(PART_GAP_MS);
  }
  setAnchorStatus('sent', 'Sent; waiting for the next chunk…');
}

// ---- engine figures under the video

function fmt(n, digits = 0) { return n == null || !Number.isFinite(n) ? '–' : n.toFixed(digits); }

function showEngineStats(sv) {
  if (!sv || stats.source !== 'engine') return;
  ui.sxChunk.textContent = Number.isInteger(sv.chunk) ? `#${sv.chunk}` : '–';
  ui.sxChunkMs.textContent = sv.chunkMs ? `${fmt(sv.chunkMs)} ms` : '–';
  ui.sxFps.textContent = `${fmt(sv.genFps, 1)} / ${fmt(sv.sentFps, 1)} fps`;
  ui.sxBuffer.textContent = sv.bufferMax != null ? `${sv.buffer}/${sv.bufferMax}` : '–';
  ui.sxKv.textContent = sv.kvTotal != null
    ? `${sv.kvUsed}/${sv.kvTotal}` + (sv.kvStreamsMax ? ` · ${sv.kvStreams}/${sv.kvStreamsMax} streams` : '') : '–';
  ui.sxPromptMs.textContent = sv.promptLatencyMs == null ? '–' : `${fmt(sv.promptLatencyMs)} ms`;
  const lc = sv.lastControl;
  ui.sxControl.textContent = lc
    ? `Last change: ${lc.type}${Number.isInteger(lc.chunk) ? ` at chunk ${lc.chunk}` : ''}` +
      `${Number.isInteger(lc.frame) ? ` (frame ${lc.frame})` : ''}`
    : '';
  const slow = Number(sv.slowdown);
  if (slow > 1.01) {
    ui.slowdown.textContent = `The server runs more streams than it can make at full speed: every stream ` +
      `plays ${slow.toFixed(2)}× slower until one ends.`;
    ui.slowdown.hidden = false;
  } else {
    ui.slowdown.hidden = true;
  }
}

function drawTimeline() {
  requestAnimationFrame(drawTimeline);
  if (ui.strip.hidden) return;
  timeline.draw(chunkClock, stats.lastPaintedFrameNo, stats.fps);
}

// ---- controls

ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  startOrSteer(ui.prompt.value);
});
ui.transition.addEventListener('change', updateTransitionRow);
ui.blendChunks.addEventListener('input', () => { ui.blendChunks.dataset.touched = '1'; });

ui.seedApply.addEventListener('click', () => {
  const v = ui.seed.value.trim();
  if (!/^\d+$/.test(v)) { toast('The seed is a whole number of 0 or more.', true); return; }
  send({ type: 'seed', seed: Number(v) }, 'seed');
});
ui.seed.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && inSession) { ev.preventDefault(); ui.seedApply.click(); }
});
ui.pause.addEventListener('click', () => send({ type: paused ? 'resume' : 'pause' }, paused ? 'resume' : 'pause'));
ui.reset.addEventListener('click', () => send({ type: 'reset' }, 'reset'));
ui.record.addEventListener('click', () => send({ type: 'record', action: recording ? 'stop' : 'start' }, 'record'));
ui.anchorPin.addEventListener('click', () => {
  setAnchorStatus('sending', 'Pinning the newest chunk…');
  send({ type: 'anchor', action: 'pin' }, 'anchor pin');
});
ui.anchorUpload.addEventListener('click', () => ui.anchorFile.click());
ui.anchorFile.addEventListener('change', () => {
  const f = ui.anchorFile.files && ui.anchorFile.files[0];
  ui.anchorFile.value = '';   // choosing the same file again is a new upload
  if (f) uploadAnchor(f);
});
ui.copyLink.addEventListener('click', async () => {
  const link = ui.viewerLink.value;
  if (!link) return;
  try {
    await navigator.clipboard.writeText(link);
    toast('Viewer link copied.');
  } catch (e) {
    ui.viewerLink.select();   // clipboard refused (permissions): leave it selected to copy by hand
    toast('Press Ctrl+C to copy the selected link.');
  }
});

// ---- stats: display and report to the server

setInterval(() => {
  player.tick();
  const sv = stats.server;
  ui.stFps.textContent = `${stats.fpsPainted} fps`;
  ui.stLatency.textContent = stats.latencyMs == null ? '–' : `~${fmt(stats.latencyMs)} ms`;
  ui.stBitrate.textContent = `${stats.bitrateKbps} kbit/s`;
  ui.stDropped.textContent = `${stats.droppedServer + stats.droppedLocal}`;
  ui.stFrame.textContent = stats.lastPaintedFrameNo >= 0 ? `${stats.lastPaintedFrameNo}` : '–';
  ui.stSize.textContent = stats.width ? `${stats.width}×${stats.height} @ ${stats.fps}` : '–';
  ui.stServer.textContent = sv ? `${fmt(sv.fps, 1)} fps, enc ${fmt(sv.encodeMs, 1)} ms` : '–';
  ui.stViewers.textContent = sv && sv.viewers != null ? `${sv.viewers}` : '–';
  updateControls();
}, 1000);

setInterval(() => {
  if (!inSession || !conn.isOpen()) return;
  conn.send({ type: 'stats', decodeQueue: player.decodeQueue(), fps: stats.fpsPainted,
    dropped: stats.droppedServer + stats.droppedLocal });
}, 2000);

// Test hooks: the decoder-error path (reset, ask for a keyframe, wait for it), a dropped
// connection (the page reconnects and rejoins by itself), a raw message as if from a control
// (`what` names it for the ack/error handling, e.g. 'anchor image'), and the anchor part size.
window.flipbookDebug = {
  simulateDecoderError() { player.onDecoderError(new Error('simulated decoder error')); },
  dropConnection() { if (conn.ws) conn.ws.close(4000, 'test: dropped'); },
  send(msg, what) { return send(msg, what); },
  // Anchor images in parts of at most n base64 characters (0: the server's limit), so a test
  // with a small model still exercises uploads in several parts.
  setPartChars(n) { debugPartChars = n; },
};

// ---- go

if (mode === 'viewer') {
  ui.viewerLink.value = location.href;
  document.body.classList.add('viewer');
  ui.badgeViewer.hidden = false;
  ui.viewerNote.hidden = false;
  for (const el of [ui.prompt, ui.send, ui.transition, ui.blendChunks, ui.seed, ui.seedApply, ui.pause,
    ui.reset, ui.record, ui.anchorPin, ui.anchorUpload, ui.anchorFile]) el.disabled = true;
}
if (!stats.webcodecs) {
  const [title, text] = noWebCodecsMessage();
  showOverlay(title, text, true);
} else if (mode === 'viewer') {
  showOverlay('Joining the stream…', '');
} else if (owner) {
  showOverlay('Rejoining your stream…', '');
}
updateTransitionRow();
updateControls();
requestAnimationFrame(drawTimeline);
conn.open();
