// One test's world: its own sfu-server, one headless Chromium with a fresh profile, and a page
// per participant, all in one room. On failure it prints what every page and the server saw.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Server } from './server.mjs';
import { StopWaiting, waitFor } from './wait.mjs';

export const CHROMIUM_BIN = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // Without it Chrome gathers no 127.0.0.1 candidate and never reaches a loopback server.
  '--allow-loopback-in-peer-connection',
  '--disable-gpu',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
  // Keep every packet on this machine: no name resolves but 127.0.0.1.
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
  // Pages join without a click; their <audio> elements must still play.
  '--autoplay-policy=no-user-gesture-required',
];

const CONSOLE_LINES_KEPT = 300;

/**
 * The flags of a browser that opens `server`'s pages: CHROMIUM_ARGS, and when the server is not
 * on 127.0.0.1: its address let through the resolver rules, and its origin treated as secure
 * (as loopback is by itself) so that getUserMedia works there.
 */
export function browserArgs(server) {
  if (server.host === '127.0.0.1') return [...CHROMIUM_ARGS];
  // The resolver rules map IP literals too: the server's address must be excluded as well.
  return [
    ...CHROMIUM_ARGS.filter((arg) => !arg.startsWith('--host-resolver-rules=')),
    `--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE ${server.host}`,
    `--unsafely-treat-insecure-origin-as-secure=${server.url}`,
  ];
}

/**
 * Runs `body(room)` with a fresh server and browser, and always cleans up. On failure prints
 * each page's stats, client state and console, what the test added with `room.addDiagnostics`,
 * and the server's output, then rethrows. `chromiumArgs` are added to the browser's flags
 * (e.g. `--use-file-for-fake-audio-capture=…`); `server` are options of `Server.start` (e.g.
 * `{host}`: the address it listens on and announces).
 */
export async function withRoom(body, { chromiumArgs = [], server: serverOptions } = {}) {
  const server = await Server.start(serverOptions);
  const profile = await fs.mkdtemp(path.join(os.tmpdir(), 'sfu-e2e-chromium-'));
  const room = new Room(server, `e2e-${Math.random().toString(36).slice(2, 8)}`);
  try {
    room.context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_BIN,
      headless: true,
      args: [...browserArgs(server), ...chromiumArgs],
      viewport: { width: 1000, height: 700 },
    });
    await body(room);
  } catch (err) {
    console.error(await room.diagnostics());
    throw err;
  } finally {
    await room.context?.close().catch(() => {});
    await server.stop();
    await fs.rm(profile, { recursive: true, force: true });
  }
}

export class Room {
  constructor(server, name) {
    this.server = server;
    this.name = name;
    this.context = null;
    this.participants = [];
    this.extraDiagnostics = [];
  }

  /**
   * Adds a section to the failure report: `fn()` (may be async) returns text, called only if the
   * test fails.
   */
  addDiagnostics(title, fn) {
    this.extraDiagnostics.push({ title, fn });
  }

  /**
   * Opens a page that joins this room as `name` (with ?autojoin=1) and waits until joined.
   * `query` adds URL parameters of the web client, e.g. `{media: '0'}` to join as a viewer
   * (see examples/web/app.js). `context` opens the page in another browser than the room's (e.g.
   * one launched in a network namespace); it is still reported on failure.
   */
  async join(name, { query: extra = {}, context = this.context } = {}) {
    const page = await context.newPage();
    const p = new Participant(name, page);
    this.participants.push(p);
    const query = new URLSearchParams({ room: this.name, name, autojoin: '1', ...extra });
    await page.goto(`${this.server.url}/?${query}`);
    p.sid = await p.waitFor(
      () => {
        const c = window.sfuClient;
        if (c?.lastError && !c.joined) throw new Error(`join failed: ${JSON.stringify(c.lastError)}`);
        return c?.joined && c.self.sid;
      },
      { what: `${name} to join` },
    );
    return p;
  }

  /** Everything seen, as text: per page the client state, stats, console; the server's output. */
  async diagnostics() {
    const parts = ['', `======== e2e diagnostics (room ${this.name}, server ${this.server.url}) ========`];
    for (const p of this.participants) {
      parts.push(`---- page of ${p.name} (sid ${p.sid ?? '?'}${p.page.isClosed() ? ', closed' : ''}) ----`);
      if (!p.page.isClosed()) {
        try {
          const seen = await withTimeout(
            p.page.evaluate(async () => {
              const c = window.sfuClient;
              if (!c) return { error: 'window.sfuClient is not defined' };
              return { stats: await c.stats(), publishStats: await c.publishStats(), state: c.snapshot() };
            }),
            5_000,
          );
          parts.push(`stats: ${JSON.stringify(seen.stats, null, 1)}`);
          parts.push(`publishStats: ${JSON.stringify(seen.publishStats)}`);
          const { frames, sdp, ...state } = seen.state ?? {};
          parts.push(`state: ${JSON.stringify(state, null, 1)}`);
          parts.push('signaling frames (in/out):');
          for (const f of frames ?? []) parts.push(`  ${f.t}ms ${f.dir === 'in' ? '<-' : '->'} ${JSON.stringify(f.frame)}`);
          for (const [k, v] of Object.entries(sdp ?? {})) if (v) parts.push(`sdp ${k}:\n${v.trimEnd()}`);
        } catch (err) {
          parts.push(`(could not read the page: ${err.message})`);
        }
      }
      parts.push('console:', ...p.console.slice(-80).map((l) => `  ${l}`));
    }
    for (const { title, fn } of this.extraDiagnostics) {
      parts.push(`---- ${title} ----`);
      try {
        parts.push(String(await withTimeout(Promise.resolve().then(fn), 5_000)));
      } catch (err) {
        parts.push(`(failed: ${err.message})`);
      }
    }
    parts.push('---- sfu-server output (tail) ----', this.server.tail());
    parts.push('======== end of e2e diagnostics ========');
    return parts.join('\n');
  }
}

export class Participant {
  constructor(name, page) {
    this.name = name;
    this.page = page;
    this.sid = null;
    this.console = [];
    const keep = (line) => {
      this.console.push(line);
      if (this.console.length > CONSOLE_LINES_KEPT) this.console.shift();
    };
    page.on('console', (msg) => keep(`[${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => keep(`[pageerror] ${err.message}`));
    page.on('crash', () => keep('[crash] the page crashed'));
  }

  /** Evaluates `fn(arg)` in the page until it returns something truthy (see waitFor). */
  waitFor(fn, { arg, timeout = 30_000, what } = {}) {
    return waitFor(
      async () => {
        if (this.page.isClosed()) throw new StopWaiting(`the page of ${this.name} is closed`);
        return this.page.evaluate(fn, arg);
      },
      { timeout, what: `${what} (on ${this.name}'s page)` },
    );
  }

  /** Waits until this page lists `other` by name: in sfuClient.participants, a tile and the list. */
  waitUntilShows(other) {
    return this.waitFor(
      ({ sid, name }) => {
        const c = window.sfuClient;
        const tileName = document.querySelector(`.tile.remote[data-sid="${sid}"] .name`)?.textContent;
        const listed = [...document.querySelectorAll('#participant-list li')].some((li) => li.textContent === name);
        return c.participants[sid]?.name === name && tileName === name && listed;
      },
      { arg: { sid: other.sid, name: other.name }, what: `${other.name} to be shown` },
    );
  }

  /**
   * Waits until `other` and the given tracks of theirs are gone from this page: from the
   * client's state, the tile grid, the participant list and every media element, and the
   * subscribe transceivers that carried them no longer receive.
   */
  waitUntilGone(other, trackIds, mids) {
    return this.waitFor(
      ({ sid, name, trackIds, mids }) => {
        const c = window.sfuClient;
        const left = [];
        if (c.participants[sid]) left.push('participants');
        if (Object.values(c.remoteTracks).some((t) => t.participant === sid)) left.push('remoteTracks');
        if (Object.values(c.publishedTracks).some((t) => t.participant === sid)) left.push('publishedTracks');
        if (document.querySelector(`[data-sid="${sid}"]`)) left.push('tile');
        if ([...document.querySelectorAll('#participant-list li')].some((li) => li.textContent === name)) left.push('list');
        for (const id of trackIds) if (document.querySelector(`[data-track-id="${id}"]`)) left.push(`element ${id}`);
        for (const t of c.subscribePc.getTransceivers()) {
          const receiving = t.currentDirection === 'recvonly' || t.currentDirection === 'sendrecv';
          if (mids.includes(t.mid) && receiving) left.push(`transceiver mid ${t.mid} still ${t.currentDirection}`);
        }
        // Thrown, so that the timeout message says what is left.
        if (left.length) throw new Error(`still there: ${left.join(', ')}`);
        return true;
      },
      { arg: { sid: other.sid, name: other.name, trackIds, mids }, what: `${other.name} to be gone` },
    );
  }

  evaluate(fn, arg) {
    return this.page.evaluate(fn, arg);
  }

  /** window.sfuClient.stats(): received track id -> inbound-rtp summary. */
  stats() {
    return this.page.evaluate(() => window.sfuClient.stats());
  }

  /** The tracks we receive from `other`: [{id, kind, source, muted, mid}]. */
  tracksFrom(other) {
    return this.page.evaluate(
      (sid) => Object.values(window.sfuClient.remoteTracks).filter((t) => t.participant === sid),
      other.sid,
    );
  }
}

function withTimeout(promise, ms) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref()),
  ]);
}
