// End-to-end test of the web client in Debian's Chromium, driven by playwright-core.
//
//   node e2e.mjs --flipbookd PATH --web-root DIR --out DIR [--chromium /usr/bin/chromium]
//
// Starts flipbookd (test pattern, 256x256, --port 0), opens the page, starts a stream by typing
// a prompt and pressing Enter, and checks: frames are decoded and painted (canvas not blank,
// frame counter advancing), a new prompt is acknowledged in the page and reached the daemon,
// pause/resume, a server-side recording started and stopped from the page downloads, and the
// viewer link plays in a second page with steering hidden, and the page served over https (a
// throw-away certificate from `openssl req`, when openssl is installed) plays over wss.
// Screenshots go to --out. Prints latency figures (frame produced -> painted). Exit 0 on
// success, 1 on any failure.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Checks, canvasStats, httpGet, launchBrowser, makeCertificate, parseArgs, sleep, startDaemon,
  stopDaemon, watchConsole } from './common.mjs';

const args = parseArgs(process.argv.slice(2));
const FPS = 30;
const chromiumPath = args.chromium || '/usr/bin/chromium';
const outDir = args.out || process.cwd();
const t = new Checks('browser_e2e');
const check = t.check.bind(t);
const figure = t.figure.bind(t);
const waitFor = t.waitFor.bind(t);

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flipbook-browser-'));
  const watchdog = setTimeout(() => { console.log('FAIL  whole test timed out'); process.exit(1); }, 110000);
  let daemon = null, context = null, tlsDaemon = null;
  try {
    daemon = await startDaemon(args.flipbookd, tmp, ['--source', 'testpattern', '--width', '256',
      '--height', '256', '--fps', String(FPS), '--web-root', args['web-root']]);
    const base = daemon.base;
    // A non-localhost name for the same loopback daemon: an insecure origin, no WebCodecs.
    context = await launchBrowser(chromiumPath, path.join(tmp, 'profile'), { ignoreHTTPSErrors: true },
      ['--host-resolver-rules=MAP flipbook.test 127.0.0.1']);
    const page = context.pages()[0] || await context.newPage();
    const consoleErrors = [];
    watchConsole(page, consoleErrors);

    await page.goto(base);
    check(await page.evaluate(() => window.isSecureContext && typeof VideoDecoder === 'function'),
      'page is a secure context with WebCodecs');
    await waitFor(page, () => window.flipbookStats && window.flipbookStats.state === 'idle', null, 10000,
      'page connects and waits for a prompt');
    // What the server serves (`info` -> `server`): the test pattern has no chunks, transitions,
    // anchors or example prompts, so none of those controls show.
    if (await waitFor(page, () => window.flipbookStats.serverInfo !== null, null, 5000, 'server info arrives')) {
      const si = await page.evaluate(() => window.flipbookStats.serverInfo);
      check(si.source === 'testpattern' && si.width === 256 && si.fps === 30 && Array.isArray(si.prompts),
        'server info: test pattern, its size and rate', JSON.stringify(si).slice(0, 200));
      const shown = await page.evaluate(() => ['transition-row', 'anchor-card', 'strip', 'suggestions']
        .filter((id) => { const el = document.getElementById(id); return el && el.offsetParent !== null; }));
      check(shown.length === 0, 'test pattern: no transition, anchor, chunk strip or suggestions shown', shown.join(', '));
    }

    // Start: type a prompt, press Enter.
    await page.fill('#prompt', 'a quiet harbour at dusk');
    const t0 = Date.now();
    await page.press('#prompt', 'Enter');
    if (await waitFor(page, () => window.flipbookStats.framesPainted >= 5, null, 15000, 'first frames painted')) {
      check(true, 'stream started and painted', `first 5 frames after ${Date.now() - t0} ms`);
      figure(`time from Enter to 5 painted frames: ${Date.now() - t0} ms`);
    }
    const role = await page.evaluate(() => window.flipbookStats.role);
    check(role === 'owner', 'page is the owner', role);

    // Frames keep coming: counter advances over 2 s at about the stream rate.
    const s1 = await page.evaluate(() => ({ ...window.flipbookStats }));
    await sleep(2000);
    const s2 = await page.evaluate(() => ({ ...window.flipbookStats }));
    const painted = s2.framesPainted - s1.framesPainted;
    const advanced = s2.lastPaintedFrameNo - s1.lastPaintedFrameNo;
    check(advanced >= 1.6 * FPS, 'frame counter advances over 2 s', `${advanced} frames`);
    check(painted >= 1.6 * FPS, 'frames painted over 2 s', `${painted} paints, ${s2.framesDecoded - s1.framesDecoded} decoded`);
    check(s2.decodeErrors === 0, 'no decoder errors', String(s2.decodeErrors));
    figure(`painted ${(painted / 2).toFixed(1)} fps, decoded ${((s2.framesDecoded - s1.framesDecoded) / 2).toFixed(1)} fps`);

    const px = await page.evaluate(canvasStats);
    check(px.w === 256 && px.h === 256, 'canvas has the stream size', `${px.w}x${px.h}`);
    check(px.std > 20 && px.colours >= 6, 'canvas is not blank',
      `luma mean ${px.mean.toFixed(1)} std ${px.std.toFixed(1)}, ${px.colours} colours`);
    check(await page.locator('#overlay').evaluate((el) => el.classList.contains('gone')), 'overlay gone while playing');

    // Latency, measured before anything pauses the stream (a pause shifts the timestamps).
    await sleep(1000);
    const lat = await page.evaluate(() => ({ ...window.flipbookStats }));
    figure(`latency produce->paint (owner, from its start message): median ${lat.e2e.medianMs?.toFixed(1)} ms, p90 ${lat.e2e.p90Ms?.toFixed(1)} ms over ${lat.e2e.n} frames`);
    figure(`latency above the fastest recent frame (queue+decode+paint): ${lat.latencyMs?.toFixed(1)} ms; arrival->decoded ${lat.decodeMs?.toFixed(1)} ms`);
    // Against the daemon's own clock: its log stamps the session start (wall clock, ms); frame
    // n is produced at about start + pts. Same machine, same clock.
    const startLine = daemon.log.find((l) => / session: \S+: started by /.test(l));
    const startMs = startLine ? Date.parse(startLine.split(' ')[0]) : NaN;
    if (Number.isFinite(startMs)) {
      const d = lat.recentPaints.map((p) => p.wallMs - (startMs + p.pts / 1000)).sort((a, b) => a - b);
      figure(`latency produce->paint against the daemon's session-start log time: median ${d[d.length >> 1].toFixed(1)} ms, min ${d[0].toFixed(1)} ms, p90 ${d[Math.floor(d.length * 0.9)].toFixed(1)} ms over ${d.length} frames`);
    }
    check(lat.e2e.medianMs !== null && lat.e2e.medianMs < 250, 'median produce->paint latency under 250 ms', `${lat.e2e.medianMs?.toFixed(1)} ms`);

    // Decoder error: the page resets its decoder, asks for a keyframe and plays on.
    const before = await page.evaluate(() => ({ ...window.flipbookStats }));
    await page.evaluate(() => window.flipbookDebug.simulateDecoderError());
    if (await waitFor(page, (n) => window.flipbookStats.framesPainted > n + 15, before.framesPainted, 5000,
      'frames again after a decoder error')) {
      const after = await page.evaluate(() => ({ ...window.flipbookStats }));
      check(after.decodeErrors === before.decodeErrors + 1 && after.keyframeRequests > before.keyframeRequests,
        'decoder error recovered through a keyframe request',
        `errors ${after.decodeErrors}, keyframe requests ${after.keyframeRequests}, keyframes ${before.keyframes}->${after.keyframes}`);
      check(after.keyframes > before.keyframes, 'a keyframe arrived after the request');
    }

    // Connection lost: the page reconnects with backoff and rejoins as owner with its token.
    const sid = await page.evaluate(() => window.flipbookStats.session);
    const pre = await page.evaluate(() => ({ ...window.flipbookStats }));
    await page.evaluate(() => window.flipbookDebug.dropConnection());
    if (await waitFor(page, (n) => window.flipbookStats.reconnects > n.reconnects && window.flipbookStats.state === 'live'
      && window.flipbookStats.framesPainted > n.framesPainted + 15, pre, 8000, 'reconnects and plays on')) {
      const post = await page.evaluate(() => ({ ...window.flipbookStats }));
      check(post.session === sid && post.role === 'owner', 'rejoined the same session as owner',
        `${post.session} ${post.role}, ${post.reconnects} reconnect(s)`);
    }

    // Steer: a new prompt, Enter, the ack shows in the page and the daemon has it.
    const newPrompt = 'lanterns drifting over a dark lake';
    await page.fill('#prompt', newPrompt);
    await page.press('#prompt', 'Enter');
    if (await waitFor(page, () => window.flipbookStats.lastAck && window.flipbookStats.lastAck.of === 'prompt',
      null, 5000, 'prompt acknowledged')) {
      const ack = await page.evaluate(() => window.flipbookStats.lastAck);
      check(true, 'prompt acknowledged', JSON.stringify(ack));
      const toast = await page.locator('#toast').innerText().catch(() => '');
      check(/Prompt applied/.test(toast), 'the ack shows in the page', toast);
    }
    await sleep(300);
    const logHasPrompt = daemon.log.some((l) => l.includes(newPrompt));
    const metrics = (await httpGet(`${base}metrics`)).body.toString();
    const reports = Number((/^flipbook_client_reports_total\s+(\d+)/m.exec(metrics) || [])[1] || 0);
    check(logHasPrompt, 'daemon log shows the new prompt', logHasPrompt ? 'found' : daemon.log.slice(-5).join(' | '));
    check(reports > 0, 'page reports its stats to the daemon (/metrics)', `flipbook_client_reports_total ${reports}`);

    // Pause and resume from the page.
    await page.click('#pause');
    if (await waitFor(page, () => window.flipbookStats.server && window.flipbookStats.server.paused === true, null, 5000, 'paused')) {
      await sleep(300);
      const a = await page.evaluate(() => window.flipbookStats.framesReceived);
      await sleep(1000);
      const b = await page.evaluate(() => window.flipbookStats.framesReceived);
      check(b - a <= 2, 'no frames while paused', `${b - a} frames in 1 s`);
      await page.click('#pause');
      await waitFor(page, (n) => window.flipbookStats.framesReceived > n + 10, b, 5000, 'frames again after resume');
      check(true, 'pause and resume work');
    }

    // Record from the page: start, wait, stop, the download link works.
    await page.click('#record');
    await waitFor(page, () => window.flipbookStats.recording && window.flipbookStats.recording.state === 'started', null, 5000, 'recording started');
    await sleep(2000);
    await page.click('#record');
    if (await waitFor(page, () => window.flipbookStats.recording && window.flipbookStats.recording.state === 'stopped', null, 8000, 'recording stopped')) {
      const href = await page.locator('#rec-link').getAttribute('href');
      const visible = await page.locator('#rec-result').isVisible();
      check(visible && /^\/recordings\/[A-Za-z0-9_-]+\.webm$/.test(href), 'download link shown', href);
      const res = await httpGet(new URL(href, base).href);
      check(res.status === 200 && res.body.length > 10000 && res.body.subarray(0, 4).equals(Buffer.from([0x1a, 0x45, 0xdf, 0xa3])),
        'recording downloads as WebM', `${res.status}, ${res.body.length} bytes`);
    }

    await page.screenshot({ path: path.join(outDir, 'browser_owner.png') });

    // The viewer link in a second page.
    const link = await page.inputValue('#viewer-link');
    check(/\/\?session=/.test(link), 'viewer link shown', link);
    const viewer = await context.newPage();
    await viewer.goto(link);
    if (await waitFor(viewer, () => window.flipbookStats && window.flipbookStats.framesPainted >= 10, null, 10000, 'viewer paints frames')) {
      const vs = await viewer.evaluate(() => ({ ...window.flipbookStats }));
      check(vs.role === 'viewer', 'second page joined as viewer', vs.role);
      const vpx = await viewer.evaluate(canvasStats);
      check(vpx.std > 20, 'viewer canvas not blank', `std ${vpx.std.toFixed(1)}`);
      check(!(await viewer.locator('#prompt-form').isVisible()) && !(await viewer.locator('#controls').isVisible()),
        'steering controls hidden for the viewer');
      const ownerStats = await page.evaluate(() => window.flipbookStats.server);
      await sleep(1200);
      const srv = await page.evaluate(() => window.flipbookStats.server);
      check(srv && srv.viewers >= 1, 'owner sees the viewer in stats', JSON.stringify(srv || ownerStats));
      await viewer.screenshot({ path: path.join(outDir, 'browser_viewer.png') });
    }

    // Opened from a name that is not localhost over http: no WebCodecs, a clear explanation.
    const insecure = await context.newPage();
    await insecure.goto(`http://flipbook.test:${daemon.port}/`);
    await sleep(500);
    const ins = await insecure.evaluate(() => ({ secure: window.isSecureContext, wc: typeof VideoDecoder,
      title: document.getElementById('overlay-title').textContent, text: document.getElementById('overlay-text').textContent }));
    check(!ins.secure && ins.wc === 'undefined' && /cannot decode/i.test(ins.title) && /localhost/.test(ins.text) && /https/.test(ins.text),
      'insecure origin: page explains to use localhost or https', `${ins.title} / ${ins.text.slice(0, 90)}...`);
    await insecure.screenshot({ path: path.join(outDir, 'browser_insecure.png') });
    await insecure.close();

    // The same page served over https (a throw-away self-signed certificate; the browser is
    // told to accept it) from a name that is not localhost: a secure context only because of
    // TLS, so WebCodecs works and the stream comes over wss.
    const cert = makeCertificate(tmp);
    if (!cert) {
      console.log('note: the openssl command is not installed; the https part is skipped');
    } else {
      tlsDaemon = await startDaemon(args.flipbookd, path.join(tmp, 'tls'), ['--source', 'testpattern',
        '--width', '128', '--height', '128', '--fps', String(FPS), '--web-root', args['web-root'],
        '--tls-cert', cert.cert, '--tls-key', cert.key]);
      check(tlsDaemon.base.startsWith('https:'), 'daemon with a certificate listens on https', tlsDaemon.base);
      const sp = await context.newPage();
      watchConsole(sp, consoleErrors);
      await sp.goto(`https://flipbook.test:${tlsDaemon.port}/`);
      const env = await sp.evaluate(() => ({ proto: location.protocol, secure: window.isSecureContext, wc: typeof VideoDecoder }));
      check(env.proto === 'https:' && env.secure && env.wc === 'function', 'page over https is a secure context with WebCodecs', JSON.stringify(env));
      if (await waitFor(sp, () => window.flipbookStats.state === 'idle', null, 8000, 'https page connects over wss')) {
        await sp.fill('#prompt', 'over tls');
        await sp.press('#prompt', 'Enter');
        if (await waitFor(sp, () => window.flipbookStats.framesPainted >= 10, null, 10000, 'frames painted over wss')) {
          const px2 = await sp.evaluate(canvasStats);
          check(px2.w === 128 && px2.std > 20, 'https page plays the stream', `${px2.w}x${px2.h}, std ${px2.std.toFixed(1)}`);
        }
      }
      await sp.close();
      const rc = await stopDaemon(tlsDaemon);
      tlsDaemon = null;
      check(rc === 0, 'TLS daemon exits 0 on SIGTERM', String(rc));
    }

    const fin = await page.evaluate(() => ({ ...window.flipbookStats }));
    figure(`owner totals: received ${fin.framesReceived}, decoded ${fin.framesDecoded}, painted ${fin.framesPainted}, dropped ${fin.droppedServer}+${fin.droppedLocal}, paint-skipped ${fin.paintSkipped}`);
    check(consoleErrors.length === 0, 'no console errors in the page', consoleErrors.slice(0, 3).join(' | '));
  } catch (e) {
    check(false, 'test ran to the end', String(e && e.stack || e));
  } finally {
    if (context) await context.close().catch(() => {});
    if (tlsDaemon) await stopDaemon(tlsDaemon);
    if (daemon) {
      const rc = await stopDaemon(daemon);
      check(rc === 0, 'daemon exits 0 on SIGTERM', String(rc));
      if (t.failed) console.log('---- daemon log (tail)\n' + daemon.log.slice(-30).join('\n'));
    }
    clearTimeout(watchdog);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  process.exit(t.finish());
}

main();
