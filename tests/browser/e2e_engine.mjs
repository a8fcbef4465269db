// End-to-end test of the web client on an engine session, in Debian's Chromium driven by
// playwright-core.
//
//   node e2e_engine.mjs --flipbookd PATH --web-root DIR --model FILE --out DIR
//                       [--keep-prompts] [--as-default] [--core]
//                       [--ffprobe PATH] [--chromium /usr/bin/chromium]
//
// What the page should show is read from the model file's own metadata: its name, its frame
// size, rate and frames per chunk (computed from its config as the engine does), and its
// example prompts.
//
// --keep-prompts  serve the file as it is and expect its own example prompts (`flipbook.prompts`,
//                 which it must carry); without it a copy of the file with three example
//                 prompts added to its metadata is served (the tiny test model has none).
// --as-default    serve it as `flipbookd --model default`, with FLIPBOOK_MODELS pointing at a
//                 folder holding it as default/model.safetensors (the lookup users rely on).
// --core          only the path a user takes (checked on the shipped default model): start from
//                 an example prompt chip with the mouse, frames painted at the model's size,
//                 a prompt change with a transition reported by the stats at its chunk, a
//                 recording made and downloaded from the page and read by ffprobe, the viewer
//                 link, and the end shown when the daemon shuts down.
//
// Without --core (the tiny random-weight model: its frames are noise, but real engine output)
// it starts `flipbookd --model COPY --max-sessions 1` and checks in the page: the example
// prompts show as chips (and start a stream from the keyboard), the engine controls show, frames
// are painted, a prompt change with `recache` and one with `blend` are acknowledged and the
// stats report the chunk each took effect at, unknown words are shown, the chunk timeline agrees
// with the acks, seed, pin and an uploaded anchor image are acknowledged (and a wrong image's
// error is shown), pause/resume, a recording made from the page downloads and ffprobe reads it
// as VP9 at the model's size, the viewer link plays without steering controls, reset restarts
// at chunk 0, a second stream is refused with the session limit shown, and the daemon's
// shutdown shows as the end of the stream with its reason. Exit 0 on success, 1 on any failure.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Checks, canvasHash, canvasStats, launchBrowser, parseArgs, sleep, startDaemon,
  stopDaemon, watchConsole } from './common.mjs';

const args = parseArgs(process.argv.slice(2));
const chromiumPath = args.chromium || '/usr/bin/chromium';
const outDir = args.out || process.cwd();
const core = args.core === true;
const keepPrompts = args['keep-prompts'] === true;
const asDefault = args['as-default'] === true;
const t = new Checks(core ? 'browser_default' : 'browser_engine');
const check = t.check.bind(t);
const waitFor = t.waitFor.bind(t);
const ADDED_PROMPTS = ['a red ball rolls across a green field', 'waves at night', 'a small town in the snow'];
const UNKNOWN = 'zqxjkv';   // no tokenizer spells this
const MAX_CHIPS = 12;       // the page offers at most this many example prompts

// The safetensors header of a model file: {size (bytes of JSON), header (parsed)}.
function readHeader(file) {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(8);
    if (fs.readSync(fd, head, 0, 8, 0) !== 8) throw new Error(`${file}: too short for a safetensors file`);
    const n = Number(head.readBigUInt64LE(0));
    if (n < 2 || n > 100 * 1024 * 1024) throw new Error(`${file}: header size ${n} is not plausible`);
    const buf = Buffer.alloc(n);
    if (fs.readSync(fd, buf, 0, n, 8) !== n) throw new Error(`${file}: header cut short`);
    return { size: n, header: JSON.parse(buf.toString('utf8')) };
  } finally {
    fs.closeSync(fd);
  }
}

// What the engine serves from a model file, from its metadata (docs/model-format.md): its name,
// its example prompts (null when it carries none), and its frame size, rate and frames per
// chunk, computed as the engine does (engine/config.c): the latent size times the decoder's
// spatial upscaling, latent frames per chunk times its temporal upscaling.
function modelInfo(file) {
  const meta = readHeader(file).header.__metadata__ || {};
  if (typeof meta['flipbook.config'] !== 'string') throw new Error(`${file}: no flipbook.config metadata`);
  const cfg = JSON.parse(meta['flipbook.config']);
  const times = (flags) => (flags || []).reduce((f, on) => f * (on ? 2 : 1), 1);
  const space = (cfg.vae.patch_size || 1) * times(cfg.vae.decoder_space_upscale);
  let prompts = null;
  try {
    const p = JSON.parse(meta['flipbook.prompts']);
    if (Array.isArray(p) && p.every((x) => typeof x === 'string')) prompts = p;
  } catch (e) { /* absent or not JSON: none */ }
  return {
    name: meta['flipbook.name'],
    width: cfg.stream.latent_width * space,
    height: cfg.stream.latent_height * space,
    fps: cfg.stream.fps,
    chunkFrames: cfg.stream.chunk_frames * times(cfg.vae.decoder_time_upscale),
    prompts,
  };
}

// The model file with `flipbook.prompts` added to its safetensors metadata. Tensor offsets
// count from the end of the header, so only the header changes; it is padded with spaces (as
// the format allows) to keep the data's alignment.
function modelWithPrompts(src, dst, prompts) {
  const buf = fs.readFileSync(src);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  header.__metadata__ = { ...(header.__metadata__ || {}), 'flipbook.prompts': JSON.stringify(prompts) };
  let text = JSON.stringify(header);
  while ((8 + Buffer.byteLength(text)) % 64 !== (8 + n) % 64) text += ' ';
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  fs.writeFileSync(dst, Buffer.concat([head, Buffer.from(text, 'utf8'), buf.subarray(8 + n)]));
}

const st = (page) => page.evaluate(() => window.flipbookStats);
const visible = (page, ids) => page.evaluate((list) => list.filter((id) => {
  const el = document.getElementById(id);
  return el && el.offsetParent !== null;
}), ids);

// Sends a prompt from the page with a transition; returns its ack (or null).
async function steer(page, text, transition, chunks) {
  await page.selectOption('#transition', transition);
  if (chunks) await page.fill('#blend-chunks', String(chunks));
  const before = (await st(page)).acks.length;
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
  if (!await waitFor(page, (n) => window.flipbookStats.acks.length > n
    && window.flipbookStats.acks.slice(n).some((a) => a.of === 'prompt'), before, 8000, `${transition} prompt acknowledged`)) return null;
  return (await st(page)).acks.slice(before).find((a) => a.of === 'prompt');
}

// Before any session: what the server serves agrees with the model file, the example prompts
// show as chips, the engine's controls show, the header names the model.
async function checkServerInfo(page, M, prompts) {
  if (!await waitFor(page, () => window.flipbookStats.serverInfo && window.flipbookStats.state === 'idle',
    null, 10000, 'page connects and learns what the server serves')) throw new Error('no server info');
  const si = (await st(page)).serverInfo;
  check(si.source === 'engine' && si.model === M.name && si.width === M.width && si.height === M.height
    && si.fps === M.fps && si.chunkFrames === M.chunkFrames,
  'server info: engine, the model\'s name, size, rate and chunk length',
  `${si.model} ${si.width}x${si.height} at ${si.fps} fps, ${si.chunkFrames} frames a chunk; the file says ` +
    `${M.name} ${M.width}x${M.height} at ${M.fps} fps, ${M.chunkFrames}`);
  check(JSON.stringify(si.prompts) === JSON.stringify(prompts), 'server info carries the model\'s example prompts', JSON.stringify(si.prompts));
  check(JSON.stringify(si.transitions) === '["cut","recache","blend"]' && si.anchorImage && si.anchorImage.partChars > 0,
    'server info: transitions and anchor image limits', JSON.stringify(si.transitions));
  const chips = await page.locator('#chips .chip').allInnerTexts();
  check(JSON.stringify(chips) === JSON.stringify(prompts.slice(0, MAX_CHIPS)), 'example prompts shown as chips', chips.join(' | '));
  const shown = await visible(page, ['transition-row', 'anchor-card', 'controls', 'suggestions']);
  check(shown.length === 4, 'engine controls shown (transition, anchor, steering, suggestions)', shown.join(', '));
  const tag = await page.locator('#brand-tag').innerText();
  check(tag.includes(M.name) && tag.includes(`${si.width}×${si.height}`), 'model name and size in the header', tag);
  return si;
}

// Frames keep coming and the picture changes. `minAdvance`: frames the counter must move in 2 s.
async function checkFrames(page, W, H, FPS, minAdvance) {
  const h1 = await page.evaluate(canvasHash);
  const s1 = await st(page);
  await sleep(2000);
  const s2 = await st(page);
  const h2 = await page.evaluate(canvasHash);
  const advanced = s2.lastPaintedFrameNo - s1.lastPaintedFrameNo;
  const sv = s2.server || {};
  check(advanced >= minAdvance, 'frame counter advances over 2 s',
    `${advanced} frames at ${FPS} fps; the server sends ${sv.fps} fps (slowdown ${sv.slowdown}, late ${sv.late})`);
  t.figure(`painted over 2 s: ${advanced} frames (${(advanced / 2).toFixed(1)} fps of ${FPS})`);
  check(h1 !== h2, 'canvas pixels change');
  check(s2.decodeErrors === 0, 'no decoder errors', String(s2.decodeErrors));
  const px = await page.evaluate(canvasStats);
  check(px.w === W && px.h === H && px.std > 2, 'canvas has the model size and is not flat',
    `${px.w}x${px.h}, luma std ${px.std.toFixed(1)}, ${px.colours} colours`);
}

// A prompt change: acknowledged with the chunk it takes effect at; the stats then report the
// switch at that chunk and the page shows it. Returns the ack (or null).
async function switchPrompt(page, text, transition, expectUnknown) {
  const ack = await steer(page, text, transition);
  if (!ack) return null;
  check(ack.transition === transition && Number.isInteger(ack.chunk) && Number.isInteger(ack.frame),
    `${transition} ack has transition, chunk and frame`, JSON.stringify(ack));
  if (!expectUnknown) {
    check(Array.isArray(ack.unknownWords) && ack.unknownWords.length === 0, 'the new prompt has no unknown words',
      JSON.stringify(ack.unknownWords));
  }
  if (await waitFor(page, (a) => {
    const sv = window.flipbookStats.server;
    return sv && sv.lastControl && sv.lastControl.type === 'prompt' && sv.lastControl.chunk === a.chunk
      && sv.chunk >= a.chunk && sv.promptLatencyMs != null;
  }, ack, 8000, 'stats report the prompt switch')) {
    const sv = (await st(page)).server;
    check(true, 'stats report the switch at the acknowledged chunk',
      `chunk ${sv.lastControl.chunk}, frame ${sv.lastControl.frame}, prompt->frame ${sv.promptLatencyMs} ms`);
    t.figure(`prompt -> first frame under it (${transition}): ${sv.promptLatencyMs} ms`);
    // The page shows it with the next stats message (they come once a second).
    if (await waitFor(page, (c) => document.getElementById('sx-control').textContent.includes(`chunk ${c}`),
      ack.chunk, 3000, 'the page shows where the change took effect')) {
      check(true, 'the page shows where the change took effect', await page.locator('#sx-control').innerText());
    }
    check(/\d+ ms/.test(await page.locator('#sx-prompt-ms').innerText()), 'prompt -> frame latency shown');
  }
  return ack;
}

// Records a few seconds from the page, downloads the file through the page's link and has
// ffprobe read it (VP9 at the model's size, with a duration).
async function recordAndProbe(page, tmp, W, H) {
  await page.click('#record');
  await waitFor(page, () => window.flipbookStats.recording && window.flipbookStats.recording.state === 'started', null, 5000, 'recording started');
  await sleep(3000);
  await page.click('#record');
  if (!await waitFor(page, () => window.flipbookStats.recording && window.flipbookStats.recording.state === 'stopped', null, 8000, 'recording stopped')) return;
  const href = await page.locator('#rec-link').getAttribute('href');
  check(await page.locator('#rec-result').isVisible() && /^\/recordings\/[A-Za-z0-9_-]+\.webm$/.test(href), 'download link shown', href);
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 8000 }), page.click('#rec-link')]);
  const file = path.join(tmp, 'download.webm');
  await download.saveAs(file);
  const size = fs.statSync(file).size;
  check(size > 1000, 'recording downloaded through the link', `${size} bytes, ${download.suggestedFilename()}`);
  if (!args.ffprobe || args.ffprobe === true) {
    console.log('note: no --ffprobe; the recording was not probed');
    return;
  }
  try {
    const out = JSON.parse(execFileSync(args.ffprobe, ['-v', 'error', '-of', 'json', '-show_streams',
      '-show_format', '-select_streams', 'v:0', file], { encoding: 'utf8', timeout: 30000 }));
    const v = out.streams[0] || {};
    const dur = Number(out.format && out.format.duration);
    check(v.codec_name === 'vp9' && v.width === W && v.height === H && dur > 0,
      'ffprobe: VP9 at the model size with a duration', `${v.codec_name} ${v.width}x${v.height}, ${dur} s`);
    t.figure(`recording: ${size} bytes, ${dur} s`);
  } catch (e) {
    check(false, 'ffprobe reads the recording', String(e.message || e).slice(0, 300));
  }
}

// The viewer link in a second page: frames (at least `minPerSecond` a second), no steering
// controls. Returns the page.
async function checkViewer(page, context, minPerSecond, viewerErrors) {
  const link = await page.inputValue('#viewer-link');
  const viewer = await context.newPage();
  watchConsole(viewer, viewerErrors);
  await viewer.goto(link);
  if (await waitFor(viewer, () => window.flipbookStats && window.flipbookStats.framesPainted >= 10, null, 10000, 'viewer paints frames')) {
    const vs = await st(viewer);
    check(vs.role === 'viewer', 'second page joined as viewer', vs.role);
    const steerShown = await visible(viewer, ['prompt-form', 'controls', 'anchor-card', 'transition-row', 'suggestions', 'prompt']);
    check(steerShown.length === 0, 'viewer sees no steering controls', steerShown.join(', '));
    await viewer.waitForTimeout(1200);
    check((await visible(viewer, ['strip'])).length === 1, 'viewer sees the chunk strip');
    const v1 = (await st(viewer)).lastPaintedFrameNo;
    await sleep(1000);
    const v2 = (await st(viewer)).lastPaintedFrameNo;
    check(v2 - v1 >= minPerSecond, 'viewer frame counter advances', `${v2 - v1} frames in 1 s`);
  }
  return viewer;
}

// The parts only the thorough run checks, between the first prompt change and the recording.
async function moreControls(page, daemon, si, N) {
  const W = si.width, H = si.height;
  // Blend over 3 chunks.
  const ack2 = await steer(page, 'green hills at noon', 'blend', 3);
  if (ack2) {
    check(ack2.transition === 'blend', 'blend ack', JSON.stringify(ack2));
    await waitFor(page, (a) => {
      const sv = window.flipbookStats.server;
      return sv && sv.lastControl && sv.lastControl.type === 'prompt' && sv.lastControl.chunk === a.chunk && sv.chunk >= a.chunk;
    }, ack2, 8000, 'stats report the blend');
    check(!(await page.locator('#unknown-words').isVisible()), 'unknown-word warning cleared for a known prompt');
    const promptLine = daemon.log.find((l) => l.includes(`prompt from chunk ${ack2.chunk} (frame ${ack2.frame})`));
    check(!!promptLine, 'daemon log has the blend at the same chunk and frame', promptLine || '');
    // The timeline's chunk boundaries agree with the acks: chunk starts are N frames apart
    // and one of them is the frame the blend started at (chunk 0, which began at frame 0, may
    // be shorter: the decoder trims its warm-up).
    await sleep(300);
    const tl = await st(page);
    const off = tl.chunkBoundaries.filter((b) => b !== 0 && (b - ack2.frame) % N !== 0);
    check(tl.chunkClockExact && tl.chunkBoundaries.length >= 3 && off.length === 0,
      'timeline ticks at chunk boundaries', `ticks ${tl.chunkBoundaries.join(',')}; blend from ${ack2.frame}`);
  }

  // Seed.
  await page.fill('#seed', '1234');
  await page.click('#seed-apply');
  if (await waitFor(page, () => window.flipbookStats.lastAck && window.flipbookStats.lastAck.of === 'seed', null, 6000, 'seed acknowledged')) {
    const a = (await st(page)).lastAck;
    check(a.seed === 1234 && Number.isInteger(a.chunk), 'seed ack with its chunk', JSON.stringify(a));
  }

  // Anchor: pin the current chunk, then upload a picture (wider than the model's frame: the
  // page scales and crops it to the model's size and sends RGBA base64 in parts).
  await page.click('#anchor-pin');
  if (await waitFor(page, () => window.flipbookStats.anchor && ['pinned', 'error'].includes(window.flipbookStats.anchor.state),
    null, 6000, 'pin answered')) {
    const a = (await st(page)).anchor;
    check(a.state === 'pinned' && Number.isInteger(a.chunk), 'pin acknowledged and shown', `${a.message}`);
  }
  const dataUrl = await page.evaluate(() => {
    const c = document.createElement('canvas');
    c.width = 160; c.height = 90;
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, 160, 90);
    grad.addColorStop(0, '#d04020'); grad.addColorStop(1, '#2060d0');
    g.fillStyle = grad; g.fillRect(0, 0, 160, 90);
    g.fillStyle = '#ffffff'; g.fillRect(60, 25, 40, 40);
    return c.toDataURL('image/png');
  });
  const png = Buffer.from(dataUrl.split(',')[1], 'base64');
  const sentBefore = (await st(page)).acks.length;
  await page.setInputFiles('#anchor-file', { name: 'anchor.png', mimeType: 'image/png', buffer: png });
  if (await waitFor(page, () => window.flipbookStats.anchor && ['set', 'error'].includes(window.flipbookStats.anchor.state),
    null, 10000, 'anchor image answered')) {
    const s3 = await st(page);
    check(s3.anchor.state === 'set' && Number.isInteger(s3.anchor.chunk), 'anchor image acknowledged and shown', s3.anchor.message);
    const ack = s3.acks.slice(sentBefore).find((a) => a.of === 'anchor');
    check(!!ack, 'the ack is for the anchor', JSON.stringify(ack));
    const pv = await page.evaluate(() => {
      const c = document.getElementById('anchor-preview');
      return { w: c.width, h: c.height, shown: c.offsetParent !== null };
    });
    check(pv.w === si.anchorImage.width && pv.h === si.anchorImage.height && pv.shown,
      'preview shows the picture at the model\'s size', JSON.stringify(pv));
  }
  // The same picture in several parts (parts of 5,000 characters: 64x64 RGBA is ~22,000).
  const partsBefore = (await st(page)).acks.length;
  await page.evaluate(() => window.flipbookDebug.setPartChars(5000));
  await page.setInputFiles('#anchor-file', { name: 'anchor.png', mimeType: 'image/png', buffer: png });
  if (await waitFor(page, (n) => window.flipbookStats.acks.length > n && window.flipbookStats.anchor
    && ['set', 'error'].includes(window.flipbookStats.anchor.state), partsBefore, 10000, 'anchor image in parts answered')) {
    const s4 = await st(page);
    const acks = s4.acks.slice(partsBefore).filter((a) => a.of === 'anchor');
    check(s4.anchor.state === 'set' && s4.anchorUpload.parts >= 4 && acks.length === 1,
      'anchor image sent in parts: one ack for the whole picture',
      `${s4.anchorUpload.parts} parts of ${s4.anchorUpload.chars} characters; ${s4.anchor.message}`);
  }
  await page.evaluate(() => window.flipbookDebug.setPartChars(0));

  // A wrong-size image (as a broken client would send): the error shows in the anchor card.
  await page.evaluate(() => window.flipbookDebug.send({ type: 'anchor', action: 'image', width: 10, height: 10,
    format: 'rgba32', data: 'AAAA' }, 'anchor image'));
  if (await waitFor(page, () => window.flipbookStats.anchor && window.flipbookStats.anchor.state === 'error', null, 5000,
    'wrong anchor image refused')) {
    const text = await page.locator('#anchor-status').innerText();
    check(text.includes(`${W}x${H}`), 'the refusal shows in the page with the expected size', text);
  }

  // Pause and resume.
  await page.click('#pause');
  if (await waitFor(page, () => window.flipbookStats.server && window.flipbookStats.server.paused === true, null, 5000, 'paused')) {
    await sleep(300);
    const a = (await st(page)).framesReceived;
    await sleep(1000);
    const b = (await st(page)).framesReceived;
    check(b - a <= 2, 'no frames while paused', `${b - a} frames in 1 s`);
    await page.click('#pause');
    await waitFor(page, ([n, m]) => window.flipbookStats.framesReceived > n + m, [b, si.fps / 2], 6000, 'frames again after resume');
  }
}

// The thorough run's last steps: reset restarts at chunk 0; a second stream on a server that
// allows one is refused, with its reason shown.
async function resetAndLimit(page, context, base, prompt, consoleErrors) {
  await page.click('#reset');
  if (await waitFor(page, () => window.flipbookStats.lastAck && window.flipbookStats.lastAck.of === 'reset', null, 6000, 'reset acknowledged')) {
    const a = (await st(page)).lastAck;
    check(a.chunk === 0, 'reset restarts at chunk 0', JSON.stringify(a));
    await waitFor(page, (f) => window.flipbookStats.server && window.flipbookStats.server.frame >= f
      && window.flipbookStats.server.chunk <= 3, a.frame, 4000, 'stats count chunks from 0 again');
  }

  const other = await context.newPage();
  watchConsole(other, consoleErrors);
  await other.goto(base);
  await waitFor(other, () => window.flipbookStats.state === 'idle', null, 8000, 'second page connects');
  await other.fill('#prompt', prompt);
  await other.press('#prompt', 'Enter');
  if (await waitFor(other, () => window.flipbookStats.sessionLimit !== null, null, 6000, 'second stream refused')) {
    const title = await other.locator('#overlay-title').innerText();
    const text = await other.locator('#overlay-text').innerText();
    check(/busy/i.test(title) && /session/i.test(text) && await other.locator('#overlay').isVisible(),
      'session_limit shown with its reason', `${title}: ${text}`);
  }
  await other.close();
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flipbook-browser-engine-'));
  const watchdog = setTimeout(() => { console.log('FAIL  whole test timed out'); process.exit(1); }, core ? 80000 : 150000);
  let daemon = null, context = null, daemonLog = [];
  const began = Date.now();
  try {
    if (!args.model || args.model === true) throw new Error('--model FILE is required');
    const M = modelInfo(args.model);
    let served = args.model;
    if (keepPrompts) {
      if (!M.prompts || M.prompts.length === 0) {
        throw new Error(`${args.model} carries no example prompts (flipbook.prompts); --keep-prompts needs them`);
      }
    } else {
      served = path.join(tmp, 'model.safetensors');
      modelWithPrompts(args.model, served, ADDED_PROMPTS);
      M.prompts = ADDED_PROMPTS;
    }
    const PROMPTS = M.prompts;
    let modelArg = served, env = {};
    if (asDefault) {
      // `--model default` finds $FLIPBOOK_MODELS/default/model.safetensors.
      const dir = path.join(tmp, 'models', 'default');
      fs.mkdirSync(dir, { recursive: true });
      const file = path.join(dir, 'model.safetensors');
      if (served === args.model) fs.symlinkSync(path.resolve(served), file);
      else fs.renameSync(served, file);
      modelArg = 'default';
      env = { FLIPBOOK_MODELS: path.join(tmp, 'models') };
    }
    console.log(`model: ${args.model}${asDefault ? ' (served as --model default)' : ''}: ${M.name}, ` +
      `${M.width}x${M.height} at ${M.fps} fps, ${M.chunkFrames} frames a chunk, ${PROMPTS.length} example prompts` +
      `${keepPrompts ? ' (its own)' : ' (added)'}`);

    daemon = await startDaemon(args.flipbookd, tmp, ['--model', modelArg, '--max-sessions', '1',
      '--web-root', args['web-root']], 60000, env);
    daemonLog = daemon.log;
    if (asDefault) {
      const line = daemon.log.find((l) => /engine: model \S+: \d+x\d+/.test(l)) || '';
      check(daemon.log.some((l) => l.includes('loading the model default')) && line.includes(`model ${M.name}:`),
        '`--model default` found the file', line);
    }
    const base = daemon.base;
    context = await launchBrowser(chromiumPath, path.join(tmp, 'profile'), { acceptDownloads: true });
    const page = context.pages()[0] || await context.newPage();
    const consoleErrors = [];
    watchConsole(page, consoleErrors);
    await page.goto(base);

    const si = await checkServerInfo(page, M, PROMPTS);
    const W = si.width, H = si.height, FPS = si.fps, N = si.chunkFrames;

    // Start from the first chip: the thorough run by keyboard (focus it, Enter fills the prompt
    // box, Enter starts), the core run with the mouse (click the chip, click Start).
    if (core) {
      await page.click('#chips .chip >> nth=0');
      check(await page.inputValue('#prompt') === PROMPTS[0], 'a chip fills the prompt box (click)');
    } else {
      await page.focus('#chips .chip >> nth=0');
      await page.keyboard.press('Enter');
      check(await page.inputValue('#prompt') === PROMPTS[0], 'a chip fills the prompt box (keyboard)');
    }
    const t0 = Date.now();
    if (core) await page.click('#send'); else await page.press('#prompt', 'Enter');
    if (await waitFor(page, () => window.flipbookStats.framesPainted >= 5, null, 20000, 'first frames painted')) {
      t.figure(`time from Start to 5 painted frames: ${Date.now() - t0} ms`);
    }
    let s = await st(page);
    check(s.role === 'owner' && s.config && s.config.source === 'engine' && s.config.chunkFrames === N
      && s.config.width === W && s.config.height === H,
    'owner of an engine session', `${s.role}, config ${JSON.stringify(s.config).slice(0, 160)}`);
    check(Array.isArray(s.unknownWords) && s.unknownWords.length === 0, 'the chip prompt has no unknown words', JSON.stringify(s.unknownWords));

    // A session slowed because the machine is busy (the stats' `slowdown`) still has to move:
    // the core run asks for a quarter of the model's rate, the thorough one for three quarters.
    await checkFrames(page, W, H, FPS, core ? FPS / 2 : 1.5 * FPS);

    // The strip under the video: engine figures and chunk ticks.
    if (await waitFor(page, () => window.flipbookStats.server && window.flipbookStats.server.chunkMs > 0
      && document.getElementById('sx-chunk-ms').textContent !== '–', null, 4000, 'engine figures shown')) {
      const fig = await page.evaluate(() => Object.fromEntries(['sx-chunk', 'sx-chunk-ms', 'sx-fps', 'sx-buffer', 'sx-kv']
        .map((id) => [id, document.getElementById(id).textContent])));
      check(/^#\d+$/.test(fig['sx-chunk']) && /ms$/.test(fig['sx-chunk-ms']) && /\d+\/\d+/.test(fig['sx-buffer'])
        && /\d+\/\d+/.test(fig['sx-kv']) && /fps$/.test(fig['sx-fps']), 'strip shows chunk, chunk time, fps, buffer, KV', JSON.stringify(fig));
      check((await visible(page, ['strip', 'timeline'])).length === 2, 'chunk strip visible');
    }

    if (core) {
      // Another of the model's own prompts (the same one again if it has one), with recache:
      // the model should know all the words of its own examples.
      const next = PROMPTS.length > 1 ? PROMPTS[1] : PROMPTS[0];
      await switchPrompt(page, next, 'recache', false);
    } else {
      // Recache with an unknown word: it is shown; then the controls only this run checks.
      if (await switchPrompt(page, `a blue sky over the sea ${UNKNOWN}`, 'recache', true)) {
        const uw = await page.locator('#unknown-words');
        check(await uw.isVisible() && (await uw.innerText()).includes(UNKNOWN), 'unknown word shown',
          await uw.innerText().catch(() => ''));
      }
      await moreControls(page, daemon, si, N);
    }

    await recordAndProbe(page, tmp, W, H);
    const viewerErrors = [];
    const viewer = await checkViewer(page, context, core ? FPS / 4 : FPS / 2, viewerErrors);
    if (!core) await resetAndLimit(page, context, base, PROMPTS[1] || PROMPTS[0], consoleErrors);

    const shot = core ? 'browser_default' : 'browser_engine';
    await page.screenshot({ path: path.join(outDir, `${shot}_owner.png`) });
    await viewer.screenshot({ path: path.join(outDir, `${shot}_viewer.png`) });

    // The daemon shuts down: both pages show the end and its reason. (Console errors are
    // counted before: the pages' reconnect attempts to a stopped server log some.)
    const pageErrors = [...consoleErrors, ...viewerErrors];
    const rc = await stopDaemon(daemon);
    check(rc === 0, 'daemon exits 0 on SIGTERM', String(rc));
    daemon = null;
    for (const [who, p] of [['owner', page], ['viewer', viewer]]) {
      if (await waitFor(p, () => window.flipbookStats.ended !== null, null, 5000, `${who} sees the end`)) {
        const e = (await st(p)).ended;
        const text = await p.locator('#overlay-text').innerText();
        check(e.reason === 'shutdown' && /ended/i.test(await p.locator('#overlay-title').innerText()) && /shutting down/.test(text),
          `${who}: end shown with its reason`, `${e.reason}: ${text}`);
      }
    }
    check(pageErrors.length === 0, 'no console errors in the pages', pageErrors.slice(0, 3).join(' | '));
  } catch (e) {
    check(false, 'test ran to the end', String(e && e.stack || e));
  } finally {
    if (context) await context.close().catch(() => {});
    if (daemon) {
      const rc = await stopDaemon(daemon);
      check(rc === 0, 'daemon exits 0 on SIGTERM', String(rc));
    }
    if (t.failed) console.log('---- daemon log (tail)\n' + daemonLog.slice(-40).join('\n'));
    clearTimeout(watchdog);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  t.figure(`whole test: ${((Date.now() - began) / 1000).toFixed(1)} s`);
  process.exit(t.finish());
}

main();
