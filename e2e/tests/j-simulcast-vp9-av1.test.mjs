// j. Simulcast with VP9 and AV1: like h-simulcast, but the publisher prefers VP9 or AV1
//    (`?codec=vp9|av1`: setCodecPreferences puts it first in the publish offer) and every one of
//    its three encodings (rid q/h/f: 320x180, 640x360, 1280x720) has `scalabilityMode: 'L1T3'`,
//    the only way Chrome sends these codecs as three simulcast layers. One subtest per codec,
//    in one browser, each with its own publisher and two viewers: the publisher sends three
//    layers of that codec; viewer Small (`max_spatial: 0`) decodes ≤ 400 px wide and viewer
//    Large (`max_spatial: 2, max_height: 720`) ≥ 960 px wide, every 100 ms sample for 3 s; then
//    Small switches up (`max_spatial: 2, max_height: 720`) and Large down (`max_spatial: 0`),
//    then Small down again by `max_height: 180` alone: each decodes its
//    new size within 2 s and holds it for 3 s, and framesDecoded never stands still for more
//    than 1 s. Both viewers' inbound-rtp must report the codec (codecId -> mimeType) asked for,
//    throughout. Measured figures are printed as TAP diagnostics.
//
//    As in h, the viewers publish nothing and the server drops the publisher 30 s after it
//    joined (its subscribe transport sees no ICE check): each subtest ends before that and
//    closes its pages.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withRoom } from '../lib/room.mjs';
import {
  fitsWidth,
  formatInbound,
  formatPublished,
  holds,
  longestDecodingGap,
  sampleInboundVideo,
  samplePublished,
} from '../lib/sampling.mjs';
import { waitFor } from '../lib/wait.mjs';

const LOW = { maxWidth: 400, label: '≤ 400 px wide (320x180 expected)' };
const HIGH = { minWidth: 960, label: '≥ 960 px wide (1280x720 expected)' };
const SUSTAIN_MS = 3_000;
const SWITCH_DEADLINE_MS = 2_000;
// Up to the top layer the server's congestion control must first find that the viewer's link
// carries it (a viewer that received only the lowest layer has an estimate near what it used;
// steps up follow the median estimate of the last 2 s): measured 0.3–2.1 s on loopback.
const UP_SWITCH_DEADLINE_MS = 4_000;
const MAX_STALL_MS = 1_000;
const SAMPLE_PERIOD_MS = 100;

const CODECS = [
  { name: 'vp9', mimeType: 'video/VP9' },
  { name: 'av1', mimeType: 'video/AV1' },
];

const fits = fitsWidth;

test('VP9 and AV1 simulcast (L1T3): each subscriber receives the layer it asks for and switches mid-stream', { timeout: 150_000 }, (t) =>
  withRoom(async (room) => {
    for (const codec of CODECS) {
      await t.test(`${codec.mimeType} simulcast, scalabilityMode L1T3`, { timeout: 60_000 }, (st) => simulcastWith(room, codec, st));
    }
  }));

async function simulcastWith(room, codec, t) {
  const tag = codec.name.toUpperCase();
  const publisher = await room.join(`Publisher-${tag}`, { query: { codec: codec.name } });
  const joinedAt = Date.now();
  const small = await room.join(`Small-${tag}`, { query: { media: '0' } });
  const large = await room.join(`Large-${tag}`, { query: { media: '0' } });
  try {
    const published = await samplePublished(publisher);
    room.addDiagnostics(`${publisher.name}'s outbound-rtp per layer over time`, async () =>
      formatPublished(await published.read().catch(() => published.last)),
    );

    // The publisher sends all three layers, in that codec, each L1T3.
    const layers = await publisher.waitFor(
      async () => {
        const stats = Object.values(await window.sfuClient.publishStats()).filter((s) => s.kind === 'video');
        return stats.length === 3 && stats.every((s) => s.framesEncoded > 0 && s.bytesSent > 0 && s.codec) &&
          stats.map((s) => ({ rid: s.rid, size: `${s.frameWidth}x${s.frameHeight}`, codec: s.codec, mode: s.scalabilityMode }));
      },
      { what: `the publisher to send three ${codec.mimeType} layers` },
    );
    t.diagnostic(
      `published layers: ${layers.map((l) => `${l.rid}:${l.size} ${l.codec} ${l.mode}`).join(', ')} ` +
        `(all three sent ${Date.now() - joinedAt} ms after joining, polled)`,
    );
    assert.deepEqual(layers.map((l) => `${l.rid}:${l.size}`), ['q:320x180', 'h:640x360', 'f:1280x720'], 'the publisher sends q, h and f from a 720p source');
    for (const l of layers) {
      assert.equal(l.codec, codec.mimeType, `layer ${l.rid} is sent as ${codec.mimeType}`);
      assert.equal(l.mode, 'L1T3', `layer ${l.rid} has scalabilityMode L1T3`);
    }

    const video = await small.waitFor(
      (sid) => Object.values(window.sfuClient.remoteTracks).find((t) => t.participant === sid && t.kind === 'video')?.id,
      { arg: publisher.sid, what: `${publisher.name}'s video track` },
    );

    const viewers = [
      // Switching by max_spatial here; the max_height subtest below switches by height alone.
      { p: small, first: { max_spatial: 0 }, want1: LOW, then: { max_spatial: 2, max_height: 720 }, want2: HIGH },
      { p: large, first: { max_spatial: 2, max_height: 720 }, want1: HIGH, then: { max_spatial: 0 }, want2: LOW },
    ];
    for (const v of viewers) {
      v.sampler = await sampleInboundVideo(v.p, video, SAMPLE_PERIOD_MS);
      v.codecs = new Set();
      room.addDiagnostics(`${v.p.name}'s inbound video over time (every ${SAMPLE_PERIOD_MS} ms)`, async () => {
        const samples = await v.sampler.read().catch(() => v.sampler.last);
        const marks = [v.firstAt, v.switchAt].filter(Boolean).map((m) => `${m.what} at t=${Math.round(m.sentAt)}ms (ok after ${Math.round(m.okAt - m.sentAt)} ms)`);
        return [...marks, `codecs seen: ${[...v.codecs].join(', ')}`, formatInbound(samples)].join('\n');
      });
    }
    const checkCodec = async () => {
      for (const v of viewers) {
        const received = (await v.p.stats())[video]?.codec;
        v.codecs.add(received);
        assert.equal(received, codec.mimeType, `${v.p.name} receives ${codec.mimeType} (inbound-rtp codecId -> codec mimeType)`);
      }
    };

    // 1. Small asks for the lowest layer, Large for the highest.
    await Promise.all(viewers.map(async (v) => (v.firstAt = await request(v.p, video, v.first))));
    for (const v of viewers) {
      await v.p.waitFor(
        ({ video, want }) =>
          window.sfuClient.stats().then((s) => {
            const w = s[video]?.frameWidth ?? 0;
            return w > 0 && (want.maxWidth === undefined || w <= want.maxWidth) && (want.minWidth === undefined || w >= want.minWidth);
          }),
        { arg: { video, want: v.want1 }, what: `${JSON.stringify(v.first)} to give video ${v.want1.label}` },
      );
    }
    await checkCodec();
    await holds(viewers, 'want1', SUSTAIN_MS);
    await checkCodec();

    // 2. Mid-stream, Small switches up and Large down, at the same time.
    await Promise.all(viewers.map(async (v) => (v.switchAt = await request(v.p, video, v.then))));
    await waitFor(
      async () => {
        const all = await Promise.all(viewers.map((v) => v.sampler.read()));
        return all.every((samples, i) => samples.some((s) => s.t > viewers[i].switchAt.sentAt && fits(s, viewers[i].want2)));
      },
      { timeout: 15_000, interval: 100, what: 'both viewers to decode their new layer' },
    );
    for (const v of viewers) {
      const samples = await v.sampler.read();
      const first = samples.find((s) => s.t > v.switchAt.sentAt && fits(s, v.want2));
      v.switchMs = first.t - Math.round(v.switchAt.sentAt);
      v.switchedTo = `${first.frameWidth}x${first.frameHeight}`;
    }
    await holds(viewers, 'want2', SUSTAIN_MS);
    await checkCodec();

    // 3. Figures, then the verdicts.
    const problems = [];
    for (const v of viewers) {
      const samples = await v.sampler.stop();
      const from = samples.find((s) => s.t >= v.firstAt.sentAt) ?? samples[0];
      const run = samples.slice(samples.indexOf(from));
      const gap = longestDecodingGap(run);
      const freezes = run.at(-1).freezeCount - run[0].freezeCount;
      const before = samples.filter((s) => s.t < v.switchAt.sentAt && fits(s, v.want1)).at(-1);
      t.diagnostic(
        `${v.p.name} (${[...v.codecs].join(', ')}): ${before ? `${before.frameWidth}x${before.frameHeight}` : '?'} with ${JSON.stringify(v.first)}, ` +
          `then ${v.switchedTo} ${v.switchMs} ms after ${JSON.stringify(v.then)}; ` +
          `longest decoding gap ${gap} ms; freezeCount ${run.at(-1).freezeCount} (+${freezes} during the run, ` +
          `${run.at(-1).totalFreezesDuration.toFixed(2)} s frozen in all); ${run.at(-1).framesDecoded - run[0].framesDecoded} frames ` +
          `decoded in ${((run.at(-1).t - run[0].t) / 1000).toFixed(1)} s`,
      );
      const deadline = v.want2 === HIGH ? UP_SWITCH_DEADLINE_MS : SWITCH_DEADLINE_MS;
      if (v.switchMs > deadline) {
        problems.push(`${v.p.name}: the new layer took ${v.switchMs} ms after ${JSON.stringify(v.then)} (limit ${deadline} ms)`);
      }
      if (gap > MAX_STALL_MS) problems.push(`${v.p.name}: decoding stalled for ${gap} ms (limit ${MAX_STALL_MS} ms)`);
    }
    if (problems.length) throw new Error(problems.join('\n'));

    // 4. A max_height limit alone picks the layer: the server learns VP9 layer heights from the
    //    scalability structure of keyframes and AV1's from the dependency descriptor (and
    //    assumes 720p-and-halves before any is known). Small, now at 1280 wide, asks for 180 lines.
    await t.test(`max_height 180 alone selects the 180-line ${codec.mimeType} layer`, async () => {
      const asked = await request(small, video, { max_spatial: 2, max_height: 180 });
      const sampler = await sampleInboundVideo(small, video, SAMPLE_PERIOD_MS);
      await new Promise((resolve) => setTimeout(resolve, SWITCH_DEADLINE_MS));
      const samples = (await sampler.stop()).filter((s) => s.t > asked.sentAt);
      const first = samples.find((s) => fits(s, LOW));
      t.diagnostic(
        `Small asked {max_spatial: 2, max_height: 180}: ` +
          (first ? `${first.frameWidth}x${first.frameHeight} after ${Math.round(first.t - asked.sentAt)} ms` : `still ${samples.at(-1)?.frameWidth}x${samples.at(-1)?.frameHeight} after ${SWITCH_DEADLINE_MS} ms`),
      );
      assert.ok(first, `max_height 180 gave no video ${LOW.label} within ${SWITCH_DEADLINE_MS} ms`);
    });
    await published.stop();
  } catch (err) {
    // A subtest's failure does not reach withRoom: print what the pages and the server saw now,
    // while this subtest's pages are still open.
    console.error(await room.diagnostics());
    throw err;
  } finally {
    // The next codec's publisher must not subscribe to this one, nor this one outlive its 30 s.
    for (const p of [large, small, publisher]) await p.page.close().catch(() => {});
  }
}

/** sfuClient.setSubscription in the page; resolves with {what, sentAt, okAt} in the page's clock. */
function request(participant, track, options) {
  return participant.evaluate(
    async ({ track, options }) => {
      const sentAt = performance.now();
      await window.sfuClient.setSubscription(track, options);
      return { what: JSON.stringify(options), sentAt, okAt: performance.now() };
    },
    { track, options },
  );
}

