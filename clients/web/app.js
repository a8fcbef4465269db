// flipbook web client: plays a live VP9 stream from flipbookd over WebSocket (flipbook.v1, see
// docs/protocol.md) with WebCodecs, and steers it.
//
// Pieces: Player (VideoDecoder -> latest decoded frame -> canvas on requestAnimationFrame),
// Connection (WebSocket with reconnect and backoff), and the page logic that ties them to the
// controls. window.flipbookStats is a live object with the figures the page shows; the browser
// test reads it.

const CODEC_FALLBACK = 'vp09.00.31.08';
const COLOR_SPACE = { primaries: 'bt709', transfer: 'bt709', matrix: 'bt709', fullRange: false };
const HEADER_SIZE = 16;
const MAX_DECODE_QUEUE = 8;          // frames waiting in the decoder before we skip to a keyframe
const KEYFRAME_RETRY_MS = 1500;      // ask again when the asked-for keyframe does not come
const OWNER_KEY = 'flipbook.owner';  // sessionStorage: {session, token} of the stream we own
const SUGGESTIONS = [
  'a paper boat drifting down a rainy street at night',
  'slow clouds rolling over mountains at dawn',
  'a fox running through autumn woods',
  'neon jellyfish floating above a city',
  'waves breaking on a black sand beach',
  'a lighthouse in a storm, cinematic',
];

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
  server: null,          // last `stats` message
  lastAck: null,
  lastError: null,
  recording: null,       // last `recording` message
  reconnects: 0,
};
window.flipbookStats = stats;

// ------------------------------------------------------------------------------------ DOM

const $ = (id) => document.getElementById(id);
const ui = {
  conn: $('conn'), connText: $('conn-text'),
  stage: $('stage'), canvas: $('screen'),
  overlay: $('overlay'), overlayTitle: $('overlay-title'), overlayText: $('overlay-text'),
  badgeRec: $('badge-rec'), badgePaused: $('badge-paused'), badgeViewer: $('badge-viewer'),
  form: $('prompt-form'), prompt: $('prompt'), send: $('send'),
  suggestions: $('suggestions'), viewerNote: $('viewer-note'),
  transition: $('transition'), seed: $('seed'), seedApply: $('seed-apply'),
  pause: $('pause'), record: $('record'), recResult: $('rec-result'), recLink: $('rec-link'),
  viewerLink: $('viewer-link'), copyLink: $('copy-link'),
  stFps: $('st-fps'), stLatency: $('st-latency'), stBitrate: $('st-bitrate'),
  stDropped: $('st-dropped'), stFrame: $('st-frame'), stSize: $('st-size'),
  stServer: $('st-server'), stViewers: $('st-viewers'),
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
const pendingIds = new Map();     // id -> what it was, for ack/error messages

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

function updateControls() {
  const steer = mode === 'owner' && inSession;
  ui.send.textContent = inSession ? 'Send' : 'Start';
  ui.send.disabled = !conn.isOpen() || (mode === 'viewer');
  for (const el of [ui.seedApply, ui.pause, ui.record]) el.disabled = !steer;
  ui.pause.textContent = paused ? 'Resume' : 'Pause';
  ui.record.textContent = recording ? 'Stop recording' : 'Record';
  ui.record.classList.toggle('active', recording);
  ui.badgeRec.hidden = !recording;
  ui.badgePaused.hidden = !paused;
  ui.copyLink.disabled = !ui.viewerLink.value;
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
  if (!inSession) {
    const msg = { type: 'start', prompt: text };
    const seed = ui.seed.value.trim();
    if (seed !== '') msg.seed = Number(seed);
    player.startSentAt = performance.now();
    send(msg, 'start');
    showOverlay('Starting…', 'Waiting for the first frame.');
  } else {
    send({ type: 'prompt', text, transition: ui.transition.value }, 'prompt');
  }
  ui.prompt.select();
}

const conn = new Connection(wsUrl, {
  onOpen() {
    inSession = false;
    player.restart();
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
        showOverlay('The stream has ended', 'Type a prompt below to start a new one.');
      } else {
        showOverlay('Nothing playing yet', 'Describe a scene below and press Enter to start an endless stream.');
      }
    }
    updateControls();
  },

  onMessage(msg) {
    switch (msg.type) {
      case 'hello': {
        inSession = true;
        sessionEnded = false;
        conn.connected();
        stats.role = msg.role;
        stats.session = msg.session;
        if (msg.role === 'owner' && msg.token) rememberOwner(msg.session, msg.token);
        const link = new URL(msg.viewer || `/?session=${encodeURIComponent(msg.session)}`, location.href);
        ui.viewerLink.value = link.href;
        setConn('live', msg.role === 'owner' ? 'Live' : 'Watching');
        if (stats.webcodecs) showOverlay('Connected', 'Waiting for a keyframe…');
        break;
      }
      case 'config':
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
        break;
      case 'ack': {
        stats.lastAck = msg;
        const what = pendingIds.get(msg.id) || msg.of;
        pendingIds.delete(msg.id);
        if (msg.of === 'prompt') {
          const from = msg.frame != null ? ` from frame ${msg.frame}` : '';
          toast(`Prompt applied${from}.`);
          if (Array.isArray(msg.unknownWords) && msg.unknownWords.length) {
            toast(`Prompt applied${from}; unknown words: ${msg.unknownWords.join(', ')}`);
          }
        } else if (msg.of === 'seed') toast(`Seed set to ${msg.seed ?? ui.seed.value}.`);
        else if (msg.of === 'pause') { paused = true; player.startSentAt = null; toast('Paused.'); }
        else if (msg.of === 'resume') { paused = false; toast('Resumed.'); }
        else if (what === 'record') { /* the `recording` message says more */ }
        break;
      }
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
      case 'error': {
        stats.lastError = msg;
        const what = pendingIds.get(msg.id);
        pendingIds.delete(msg.id);
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
          showOverlay('The server is busy', msg.message || 'No room for another stream right now.', true);
        } else {
          toast(`${what ? what + ': ' : ''}${msg.message || msg.code}`, true);
        }
        break;
      }
      case 'end':
        inSession = false;
        sessionEnded = true;
        if (mode === 'owner') forgetOwner();
        setConn('ended', 'Ended');
        showOverlay('The stream has ended', mode === 'viewer'
          ? `Start your own at ${location.origin}/` : 'Type a prompt below to start a new one.');
        if (mode === 'viewer') conn.stop();
        break;
      default:
        break;   // unknown message types are ignored (newer server)
    }
    updateControls();
  },

  onVideo(buf) {
    player.push(buf);
    if (stats.framesPainted > 0 && !ui.overlay.classList.contains('gone') && stats.webcodecs) hideOverlay();
  },

  onClose(ev) {
    inSession = false;
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

// ---- controls

ui.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  startOrSteer(ui.prompt.value);
});

for (const s of SUGGESTIONS) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'chip';
  b.textContent = s;
  b.addEventListener('click', () => { ui.prompt.value = s; ui.prompt.focus(); });
  ui.suggestions.appendChild(b);
}

ui.seedApply.addEventListener('click', () => {
  const v = ui.seed.value.trim();
  if (!/^\d+$/.test(v)) { toast('The seed is a whole number of 0 or more.', true); return; }
  send({ type: 'seed', seed: Number(v) }, 'seed');
});
ui.pause.addEventListener('click', () => send({ type: paused ? 'resume' : 'pause' }, paused ? 'resume' : 'pause'));
ui.record.addEventListener('click', () => send({ type: 'record', action: recording ? 'stop' : 'start' }, 'record'));
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

function fmt(n, digits = 0) { return n == null || !Number.isFinite(n) ? '–' : n.toFixed(digits); }

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

// Test hook: exercises the decoder-error path (reset, ask for a keyframe, wait for it).
window.flipbookDebug = {
  simulateDecoderError() { player.onDecoderError(new Error('simulated decoder error')); },
  // Closes the socket as a network failure would; the page reconnects and rejoins by itself.
  dropConnection() { if (conn.ws) conn.ws.close(4000, 'test: dropped'); },
};

// ---- go

if (mode === 'viewer') {
  ui.viewerLink.value = location.href;
  document.body.classList.add('viewer');
  ui.badgeViewer.hidden = false;
  ui.viewerNote.hidden = false;
  for (const el of [ui.prompt, ui.send, ui.transition, ui.seed, ui.seedApply, ui.pause, ui.record]) el.disabled = true;
}
if (!stats.webcodecs) {
  const [title, text] = noWebCodecsMessage();
  showOverlay(title, text, true);
} else if (mode === 'viewer') {
  showOverlay('Joining the stream…', '');
} else if (owner) {
  showOverlay('Rejoining your stream…', '');
}
updateControls();
conn.open();
