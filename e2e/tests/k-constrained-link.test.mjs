// k. Congestion control toward a subscriber, in Chromium, on a real shaped link. The subscriber is
//    a headless Chromium inside a network namespace of its own (lib/netns.mjs), reaching the
//    server through a veth pair whose server→subscriber direction is limited with `tc tbf`. The
//    publisher, in the root namespace, sends VP8 simulcast q/h/f (320x180, 640x360, 1280x720);
//    the subscriber asks for the top layer. Phases:
//      1. 10 Mbit/s: the subscriber decodes the top layer;
//      2. 600 kbit/s: within 15 s it decodes a layer that fits (≤ 640 px wide) and keeps
//         decoding (no long stall, the layer holds);
//      3. 10 Mbit/s again: within 30 s the top layer is back.
//    Nothing tells the server about the limit: only its bandwidth estimate from the browser's
//    transport-wide feedback can make it pick the layer. Prints a timeline (tc rate, the
//    server's estimate and pacer queue from /metrics, received size and frame rate).

import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { NamespaceLink, namespaceSupport } from '../lib/netns.mjs';
import { browserArgs, CHROMIUM_BIN, withRoom } from '../lib/room.mjs';
import {
  formatInbound,
  formatPublished,
  longestDecodingGap,
  pageNow,
  sampleInboundVideo,
  samplePublished,
} from '../lib/sampling.mjs';
import { waitFor } from '../lib/wait.mjs';

const OPEN_RATE = '10mbit'; // well above the ~3 Mbit/s the three layers and audio take
const LIMITED_RATE = '600kbit'; // the 640x360 layer's ~500 kbit/s plus audio, at most
// The bucket holds one full-size packet: a strict shaper. With a larger bucket (tc's 32 kbit
// default here) a 15 ms probe burst passes at line rate, reads as 1-2 Mbit/s on this link and
// lifts the estimate for a second at a time; see docs/congestion-control.md ("Known limits").
const LIMITED_BURST = '12kbit';
// Under the limit the estimate can still overshoot the link for a second or two (a probe read
// on the shaper: docs/congestion-control.md, "Known limits"), and the top layer of Chrome's
// fake camera is cheap enough (~0.6–0.8 Mbit/s) to be allocated then: up to a quarter of the
// hold may show a relapse, which CI saw once at 16 %. Without the server's congestion control
// the viewer never leaves the top layer at all, so this still fails without it.
const RELAPSE_TOLERANCE = 0.25;
const TOP_WIDTH = 960; // ≥: the 1280x720 layer
const FITTING_WIDTH = 640; // ≤: a layer that fits 600 kbit/s
const FIRST_TOP_DEADLINE_MS = 60_000; // join to the top layer: the publisher's own ramp-up too
const DOWN_DEADLINE_MS = 15_000; // the limit to a fitting layer
const UP_DEADLINE_MS = 30_000; // the limit lifted to the top layer again
const HOLD_MS = 5_000; // how long each phase's layer must hold once reached
const MAX_STALL_HOLDING_MS = 1_500; // longest decoding gap while a layer holds
const MAX_STALL_CONSTRAINED_MS = 4_000; // longest decoding gap from the limit to the end of its hold
const MIN_FPS_HOLDING = 2; // frames decoded per second while a layer holds, at least
// The publisher's own Chrome sometimes stops sending its top layer for a few seconds (its uplink
// estimate dips; outbound-rtp says qualityLimitationReason 'bandwidth'). The subscriber cannot
// get a layer that is not sent, so a top-layer window counts only while the publisher sends it
// (at least this many frames/s); otherwise a new window is taken, within TOP_PHASE_DEADLINE_MS.
const PUBLISHED_TOP_MIN_FPS = 10;
const TOP_PHASE_DEADLINE_MS = 60_000;
const SAMPLE_PERIOD_MS = 100;
const TIMELINE_PERIOD_MS = 1_000;
const METRICS_PERIOD_MS = 200; // /metrics scraped this often: the timeline shows each second's range

const unsupported = namespaceSupport();

test(
  'a subscriber on a shaped link gets the simulcast layer that fits, and the top one once the limit lifts',
  { timeout: 300_000, skip: unsupported ? `this machine cannot create network namespaces: ${unsupported}` : false },
  async (t) => {
    const link = NamespaceLink.create();
    const profile = await fs.mkdtemp(path.join(os.tmpdir(), 'sfu-e2e-chromium-ns-'));
    let subscriberBrowser = null;
    try {
      link.shape(OPEN_RATE);
      await withRoom(
        async (room) => {
          // The subscriber's browser runs inside the namespace: its only way to the server is
          // the shaped veth.
          subscriberBrowser = await chromium.launchPersistentContext(profile, {
            executablePath: link.wrapper(CHROMIUM_BIN),
            headless: true,
            args: browserArgs(room.server),
            viewport: { width: 1400, height: 900 },
          });
          const publisher = await room.join('Publisher');
          const viewer = await room.join('Viewer', { query: { media: '0' }, context: subscriberBrowser });

          const published = await samplePublished(publisher);
          // The publisher's page clock in the viewer's (both performance.now(), different origins).
          const [publisherOrigin, viewerOrigin] = await Promise.all(
            [publisher, viewer].map((p) => p.evaluate(() => performance.timeOrigin)),
          );
          const toViewerClock = (t) => t + publisherOrigin - viewerOrigin;
          room.addDiagnostics("Publisher's outbound-rtp per layer over time", async () =>
            formatPublished(await published.read().catch(() => published.last)),
          );
          const video = await viewer.waitFor(
            (sid) => Object.values(window.sfuClient.remoteTracks).find((t) => t.participant === sid && t.kind === 'video')?.id,
            { arg: publisher.sid, what: "the publisher's video track" },
          );
          // The top layer, whatever the tile's size: only the estimate may lower it.
          await viewer.evaluate((video) => window.sfuClient.setSubscription(video, { max_spatial: 2, max_height: 720 }), video);

          const samples = await sampleInboundVideo(viewer, video, SAMPLE_PERIOD_MS);
          const marks = []; // {t (page clock), what}
          const mark = async (what) => marks.push({ t: Math.round(await pageNow(viewer)), what });
          room.addDiagnostics(`Viewer's inbound video over time (every ${SAMPLE_PERIOD_MS} ms)`, async () => {
            const all = await samples.read().catch(() => samples.last);
            return [...marks.map((m) => `${m.what} at t=${m.t}ms`), formatInbound(all)].join('\n');
          });
          const timeline = startTimeline(room.server, publisher, viewer, video, link);
          room.addDiagnostics('timeline (every second)', () => timeline.format());
          room.addDiagnostics('tc -s qdisc on the host side', () => link.qdiscStats());
          room.addDiagnostics('congestion-control metrics now', async () => (await scrape(room.server)).lines.join('\n'));

          try {
            // Waits until a sample after `since` shows `fits`; resolves with that sample.
            const reach = (since, fits, timeout, what) =>
              waitFor(async () => (await samples.read()).find((s) => s.t > since && s.frameWidth > 0 && fits(s)), {
                timeout,
                interval: SAMPLE_PERIOD_MS,
                what,
              });
            // Whether the publisher sent its top layer all through [from, to] (viewer's clock).
            const publisherSendsTop = async (from, to) => {
              const window = (await published.read()).filter((p) => {
                const t = toViewerClock(p.t);
                return t >= from && t <= to;
              });
              return window.length > 0 && window.every((p) => (p.layers['1/f']?.framesPerSecond ?? 0) >= PUBLISHED_TOP_MIN_FPS);
            };
            // The top layer, held for HOLD_MS in a window where the publisher sends it (see
            // PUBLISHED_TOP_MIN_FPS): `first` is the first top sample; resolves with the figures
            // of the window that counted.
            const holdsTop = async (first, label) => {
              const deadline = Date.now() + TOP_PHASE_DEADLINE_MS;
              let from = first;
              for (;;) {
                await waitFor(async () => (await samples.read()).at(-1).t >= from.t + HOLD_MS, {
                  timeout: HOLD_MS + 10_000,
                  interval: SAMPLE_PERIOD_MS,
                  what: `${HOLD_MS} ms of samples after t=${from.t}ms`,
                });
                if (await publisherSendsTop(from.t, from.t + HOLD_MS)) return holds(from.t, isTop, label);
                timeline.note(`the publisher stopped sending its top layer between t=${from.t}ms and t=${from.t + HOLD_MS}ms (viewer's clock): window not counted`);
                assert.ok(Date.now() < deadline, `no ${HOLD_MS} ms window within ${TOP_PHASE_DEADLINE_MS} ms in which the publisher sent its top layer`);
                // Once the publisher sends it again, the subscriber must get it again.
                const sending = await waitFor(
                  async () => {
                    const last = (await published.read()).at(-1);
                    return (last?.layers['1/f']?.framesPerSecond ?? 0) >= PUBLISHED_TOP_MIN_FPS && toViewerClock(last.t);
                  },
                  { timeout: Math.max(1_000, deadline - Date.now()), interval: 500, what: 'the publisher to send its top layer again' },
                );
                from = await reach(sending, isTop, UP_DEADLINE_MS, `the top layer within ${UP_DEADLINE_MS} ms of the publisher sending it again`);
              }
            };
            // Measures HOLD_MS from `since`, then checks every sample of it.
            // `tolerance`: the share of samples allowed not to fit (see RELAPSE_TOLERANCE).
            const holds = async (since, fits, label, tolerance = 0) => {
              await waitFor(async () => (await samples.read()).at(-1).t >= since + HOLD_MS, {
                timeout: HOLD_MS + 10_000,
                interval: SAMPLE_PERIOD_MS,
                what: `${HOLD_MS} ms of samples after t=${since}ms`,
              });
              const span = (await samples.read()).filter((s) => s.t >= since && s.t <= since + HOLD_MS);
              const wrong = span.filter((s) => !fits(s));
              const gap = longestDecodingGap(span);
              const fps = ((span.at(-1).framesDecoded - span[0].framesDecoded) * 1000) / (span.at(-1).t - span[0].t);
              const problems = [];
              if (wrong.length > tolerance * span.length) {
                problems.push(
                  `${wrong.length} of ${span.length} samples were not ${label}: ` +
                    wrong.slice(0, 5).map((s) => `t=${s.t}ms ${s.frameWidth}x${s.frameHeight}`).join(', '),
                );
              }
              if (gap > MAX_STALL_HOLDING_MS) problems.push(`decoding stalled for ${gap} ms (limit ${MAX_STALL_HOLDING_MS} ms)`);
              if (!(fps >= MIN_FPS_HOLDING)) problems.push(`only ${fps.toFixed(1)} frames/s decoded (at least ${MIN_FPS_HOLDING})`);
              assert.ok(!problems.length, `holding ${label} for ${HOLD_MS} ms from t=${since}ms: ${problems.join('; ')}`);
              return { gap, fps };
            };
            const isTop = (s) => s.frameWidth >= TOP_WIDTH;
            const fitsLimit = (s) => s.frameWidth <= FITTING_WIDTH;

            // 1. Open link: the top layer.
            await mark(`subscribed to the top layer, tc ${OPEN_RATE}`);
            const start = marks.at(-1).t;
            const top1 = await reach(start, isTop, FIRST_TOP_DEADLINE_MS, `the top layer (≥ ${TOP_WIDTH} px wide) at ${OPEN_RATE}`);
            const hold1 = await holdsTop(top1, `≥ ${TOP_WIDTH} px wide`);
            timeline.note(`phase 1 (${OPEN_RATE}): ${top1.frameWidth}x${top1.frameHeight} ${top1.t - start} ms after subscribing`);

            // 2. The limit: a layer that fits, and video that keeps going.
            link.shape(LIMITED_RATE, { burst: LIMITED_BURST });
            await mark(`tc ${LIMITED_RATE}`);
            const limitedAt = marks.at(-1).t;
            const down = await reach(limitedAt, fitsLimit, DOWN_DEADLINE_MS, `a layer ≤ ${FITTING_WIDTH} px wide within ${DOWN_DEADLINE_MS} ms of ${LIMITED_RATE}`);
            const hold2 = await holds(down.t, fitsLimit, `≤ ${FITTING_WIDTH} px wide`, RELAPSE_TOLERANCE);
            const constrained = (await samples.read()).filter((s) => s.t >= limitedAt && s.t <= down.t + HOLD_MS);
            const stallConstrained = longestDecodingGap(constrained);
            timeline.note(
              `phase 2 (${LIMITED_RATE}): ${down.frameWidth}x${down.frameHeight} ${down.t - limitedAt} ms after the limit; ` +
                `longest decoding gap from the limit on ${stallConstrained} ms`,
            );
            assert.ok(
              stallConstrained <= MAX_STALL_CONSTRAINED_MS,
              `decoding stalled for ${stallConstrained} ms after the limit (limit ${MAX_STALL_CONSTRAINED_MS} ms)`,
            );

            // 3. The limit lifted: the top layer again.
            link.shape(OPEN_RATE);
            await mark(`tc ${OPEN_RATE} again`);
            const liftedAt = marks.at(-1).t;
            const up = await reach(liftedAt, isTop, UP_DEADLINE_MS, `the top layer within ${UP_DEADLINE_MS} ms of lifting the limit`);
            const hold3 = await holdsTop(up, `≥ ${TOP_WIDTH} px wide`);
            timeline.note(`phase 3 (${OPEN_RATE}): ${up.frameWidth}x${up.frameHeight} ${up.t - liftedAt} ms after lifting the limit`);

            const last = (await samples.read()).at(-1);
            t.diagnostic(
              `top layer ${top1.t - start} ms after subscribing; down to ${down.frameWidth}x${down.frameHeight} ` +
                `${down.t - limitedAt} ms after ${LIMITED_RATE}; back to ${up.frameWidth}x${up.frameHeight} ` +
                `${up.t - liftedAt} ms after ${OPEN_RATE}`,
            );
            t.diagnostic(
              `holding: top ${hold1.fps.toFixed(1)} fps (gap ${hold1.gap} ms), limited ${hold2.fps.toFixed(1)} fps ` +
                `(gap ${hold2.gap} ms), top again ${hold3.fps.toFixed(1)} fps (gap ${hold3.gap} ms); ` +
                `freezeCount ${last.freezeCount} (${last.totalFreezesDuration.toFixed(2)} s frozen in all)`,
            );
          } finally {
            await timeline.stop();
            for (const line of timeline.format().split('\n')) t.diagnostic(line);
            const all = await samples.read().catch(() => samples.last);
            t.diagnostic(`received size changes (page clock): ${layerChanges(all, marks)}`);
          }
        },
        { server: { host: link.hostAddr } },
      );
    } finally {
      await subscriberBrowser?.close().catch(() => {});
      link.destroySync();
      await fs.rm(profile, { recursive: true, force: true });
    }
    assert.ok(!link.existsSync(), `namespace ${link.ns} or link ${link.hostIf} left behind`);
  },
);

/**
 * Every second, until stopped: the tc rate, the server's congestion-control figures from
 * /metrics, the viewer's received size and frame rate, and the frame rate of the publisher's
 * top layer.
 */
function startTimeline(server, publisher, viewer, video, link) {
  const rows = [];
  const notes = [];
  const t0 = Date.now();
  let prev = null;
  let stopped = false;
  const state = {
    note: (text) => notes.push(`  ${((Date.now() - t0) / 1000).toFixed(1)} s: ${text}`),
    format: () =>
      [
        `timeline: t, tc rate, estimate (sfu_subscriber_estimate_bps_min: last, and [min–max] of the scrapes ` +
          `every ${METRICS_PERIOD_MS} ms in that second), pacer queue at most (sfu_pacer_queue_packets, ` +
          "sfu_pacer_queue_delay_seconds_max), received size, decoded fps, the publisher's top layer (fps sent)",
        ...rows.map(
          (r) =>
            `  ${r.t.toFixed(1).padStart(5)} s  tc ${String(r.rate).padEnd(8)} estimate ${fmtRange(r.estimate).padEnd(22)} ` +
            `pacer ${String(r.pacer ?? '-').padStart(3)} pkts ${(r.pacerDelay == null ? '-' : `${Math.round(r.pacerDelay * 1000)}`).padStart(4)} ms  ` +
            `${r.size.padStart(8)}  ${r.fps === null ? '-' : r.fps.toFixed(1).padStart(4)} fps  ` +
            `(published f ${r.top ?? '-'})`,
        ),
        ...notes,
      ].join('\n'),
    stop: async () => {
      stopped = true;
      await Promise.all([loop, scraper]);
    },
  };
  // Between two rows, /metrics every METRICS_PERIOD_MS: a short-lived estimate (a probe's) shows.
  const scraped = [];
  const scraper = (async () => {
    while (!stopped) {
      const started = Date.now();
      const metrics = await scrape(server).catch(() => null);
      if (metrics) {
        scraped.push({
          estimate: metrics.value('sfu_subscriber_estimate_bps_min'),
          pacer: metrics.value('sfu_pacer_queue_packets'),
          pacerDelay: metrics.value('sfu_pacer_queue_delay_seconds_max'),
        });
      }
      // A sampling interval for the report, not a wait for an event.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, METRICS_PERIOD_MS - (Date.now() - started))));
    }
  })();
  const range = (values) => {
    const known = values.filter((v) => v !== null && v !== undefined);
    return known.length ? { min: Math.min(...known), max: Math.max(...known), last: known.at(-1) } : null;
  };
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      const [stats, sent] = await Promise.all([
        viewer.page.isClosed() ? null : viewer.stats().catch(() => null),
        publisher.page.isClosed() ? null : publisher.evaluate(() => window.sfuClient.publishStats()).catch(() => null),
      ]);
      const f = sent?.['1/f'];
      const s = stats?.[video];
      const now = Date.now();
      const frames = s?.framesDecoded ?? null;
      const fps = prev && frames !== null ? ((frames - prev.frames) * 1000) / (now - prev.at) : null;
      prev = frames === null ? null : { frames, at: now };
      const second = scraped.splice(0);
      rows.push({
        t: (now - t0) / 1000,
        rate: link.rate ?? 'none',
        estimate: range(second.map((m) => m.estimate)),
        pacer: range(second.map((m) => m.pacer))?.max,
        pacerDelay: range(second.map((m) => m.pacerDelay))?.max,
        size: s?.frameWidth ? `${s.frameWidth}x${s.frameHeight}` : '-',
        fps,
        top: f && `${f.framesPerSecond ?? 0} fps${f.qualityLimitationReason && f.qualityLimitationReason !== 'none' ? `, ${f.qualityLimitationReason}` : ''}`,
      });
      // A sampling interval for the report, not a wait for an event.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, TIMELINE_PERIOD_MS - (Date.now() - started))));
    }
  })();
  return state;
}

/**
 * GET /metrics: `value(name)` sums the samples of one metric (all its label sets; null if it is
 * not there); `lines` are the congestion-control ones, for reports.
 */
async function scrape(server) {
  const res = await fetch(`${server.url}/metrics`, { signal: AbortSignal.timeout(2_000) });
  const text = await res.text();
  const samples = text.split('\n').filter((l) => l && !l.startsWith('#'));
  return {
    lines: samples.filter((l) => /^sfu_(subscriber|pacer|congestion|consumers_congestion)/.test(l)),
    value(name) {
      let sum = null;
      for (const l of samples) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(l);
        if (m && m[1] === name && Number.isFinite(Number(m[3]))) sum = (sum ?? 0) + Number(m[3]);
      }
      return sum;
    },
  };
}

/** "t=…ms 1280x720, [tc 600kbit at t=…ms], t=…ms 320x180, …": where the received size changed. */
function layerChanges(samples, marks) {
  const events = marks.map((m) => ({ t: m.t, text: `[${m.what} at t=${m.t}ms]` }));
  let last = null;
  for (const s of samples) {
    const size = s.frameWidth ? `${s.frameWidth}x${s.frameHeight}` : '-';
    if (size !== last) events.push({ t: s.t, text: `t=${s.t}ms ${size}` });
    last = size;
  }
  return events
    .sort((a, b) => a.t - b.t)
    .map((e) => e.text)
    .join(', ');
}

function fmtRange(r) {
  if (!r) return '-';
  return r.min === r.max ? fmtBps(r.last) : `${fmtBps(r.last)} [${fmtBps(r.min)}–${fmtBps(r.max)}]`;
}

function fmtBps(bps) {
  if (bps === null || bps === undefined) return '-';
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)}M` : `${Math.round(bps / 1e3)}k`;
}
