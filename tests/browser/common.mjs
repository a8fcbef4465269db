// Shared pieces of the browser tests: arguments, named checks, a flipbookd on --port 0, plain
// HTTP(S) fetches, Chromium with a throw-away profile, and canvas pixel statistics.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { chromium } from 'playwright-core';

// --name VALUE pairs; a --name followed by another --name (or by nothing) is a flag: true.
export function parseArgs(argv) {
  return Object.fromEntries(argv.reduce((acc, a, i, all) => {
    if (a.startsWith('--')) {
      const v = all[i + 1];
      acc.push([a.slice(2), v === undefined || v.startsWith('--') ? true : v]);
    }
    return acc;
  }, []));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Named pass/fail results; finish() prints the summary and gives the exit status.
export class Checks {
  constructor(name) { this.name = name; this.passed = 0; this.failed = 0; this.figures = []; }

  check(ok, what, detail = '') {
    if (ok) this.passed++; else this.failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'}  ${what}${detail !== '' ? `  (${detail})` : ''}`);
    return ok;
  }

  figure(text) { this.figures.push(text); console.log(`figure: ${text}`); }

  // Waits for fn(arg) to be truthy in the page; a timeout is a failed check with the page's
  // figures in the detail.
  async waitFor(page, fn, arg, timeoutMs, what) {
    try {
      await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 100 });
      return true;
    } catch (e) {
      const st = String(await page.evaluate(() => JSON.stringify(window.flipbookStats)).catch(() => '?'));
      this.check(false, what, `timed out after ${timeoutMs} ms; stats ${st.slice(0, 600)}`);
      return false;
    }
  }

  finish() {
    console.log(`${this.name}: ${this.passed} passed, ${this.failed} failed`);
    return this.failed ? 1 : 0;
  }
}

// GET over http or https (a self-signed certificate is accepted: tests make their own).
export function httpGet(url) {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.get(u, { timeout: 5000, rejectUnauthorized: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

// Starts flipbookd with `extra` arguments on 127.0.0.1:0 (and `env` added to this process's
// environment); resolves once it prints its "listening on" line:
// {proc, port, base (http(s)://127.0.0.1:PORT/), log (lines), recDir}.
export function startDaemon(flipbookd, tmp, extra, timeoutMs = 30000, env = {}) {
  const recDir = path.join(tmp, 'recordings');
  fs.mkdirSync(recDir, { recursive: true });
  const proc = spawn(flipbookd, ['--host', '127.0.0.1', '--port', '0', '--record-dir', recDir,
    '--log-level', 'debug', ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const log = [];
  return new Promise((resolve, reject) => {
    let done = false;
    const onData = (buf) => {
      for (const line of buf.toString().split('\n')) {
        if (!line) continue;
        log.push(line);
        const m = /listening on (https?):\/\/([^/\s]+):(\d+)\//.exec(line);
        if (m && !done) {
          done = true;
          resolve({ proc, port: Number(m[3]), base: `${m[1]}://127.0.0.1:${m[3]}/`, log, recDir });
        }
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('error', (e) => { if (!done) { done = true; reject(new Error(`cannot run flipbookd: ${e.message}`)); } });
    proc.on('exit', (code) => { if (!done) { done = true; reject(new Error(`flipbookd exited ${code}: ${log.join('\n')}`)); } });
    setTimeout(() => { if (!done) { done = true; proc.kill('SIGKILL'); reject(new Error('flipbookd did not start')); } }, timeoutMs);
  });
}

// SIGTERM, then SIGKILL after 10 s; resolves with the exit code (or the signal's name).
export function stopDaemon(d) {
  return new Promise((resolve) => {
    if (d.proc.exitCode !== null) { resolve(d.proc.exitCode); return; }
    const t = setTimeout(() => { d.proc.kill('SIGKILL'); }, 10000);
    d.proc.on('exit', (code, sig) => { clearTimeout(t); resolve(code ?? sig); });
    d.proc.kill('SIGTERM');
  });
}

export async function launchBrowser(chromiumPath, profileDir, extraOptions = {}, extraArgs = []) {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...extraArgs],
    ...extraOptions,
  });
}

// Collects console errors and uncaught exceptions of a page.
export function watchConsole(page, into) {
  page.on('console', (m) => { if (m.type() === 'error') into.push(m.text()); });
  page.on('pageerror', (e) => into.push(String(e)));
}

// In the page: mean/stddev of the canvas's luma and how many distinct coarse colours it holds.
export function canvasStats() {
  const c = document.getElementById('screen');
  const ctx = c.getContext('2d');
  const { data } = ctx.getImageData(0, 0, c.width, c.height);
  const step = c.width * c.height > 16384 ? 7 : 1;
  let sum = 0, sum2 = 0, n = 0;
  const colours = new Set();
  for (let i = 0; i < data.length; i += 4 * step) {
    const y = 0.2126 * data[i] + 0.7152 * data[i + 1] + 0.0722 * data[i + 2];
    sum += y; sum2 += y * y; n++;
    colours.add(((data[i] >> 5) << 6) | ((data[i + 1] >> 5) << 3) | (data[i + 2] >> 5));
  }
  const mean = sum / n;
  return { w: c.width, h: c.height, mean, std: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), colours: colours.size };
}

// In the page: a cheap fingerprint of the canvas pixels (to see that the picture changes).
export function canvasHash() {
  const c = document.getElementById('screen');
  const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
  let h = 2166136261;
  for (let i = 0; i < data.length; i += 4) h = Math.imul(h ^ (data[i] + 3 * data[i + 1] + 7 * data[i + 2]), 16777619);
  return h >>> 0;
}

// A throw-away self-signed certificate for 127.0.0.1 in `dir`: {cert, key} paths, or null when
// the openssl command is not installed.
export function makeCertificate(dir) {
  const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore', timeout: 30000 });
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw new Error(`openssl req failed: ${e.message}`);
  }
  return { cert, key };
}
