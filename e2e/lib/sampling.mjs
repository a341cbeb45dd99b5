// Sampling getStats inside a page at a fixed period, for measurements finer than a round trip
// through Playwright allows (switch times, gaps in decoding). Times are the page's
// performance.now(), in ms.

import { waitFor } from './wait.mjs';

/**
 * Starts sampling, every `periodMs`, the inbound-rtp of the video track `trackId` that
 * `participant` receives: {t, framesDecoded, frameWidth, frameHeight, freezeCount,
 * totalFreezesDuration, keyFramesDecoded, bytesReceived}. Resolves with a sampler whose
 * `read()` returns the samples so far and `stop()` ends sampling and returns them all.
 */
export async function sampleInboundVideo(participant, trackId, periodMs = 100) {
  const key = `inbound:${trackId}`;
  await participant.evaluate(
    ({ key, trackId, periodMs }) => {
      const samplers = (window.__e2eSamplers ??= {});
      const s = (samplers[key] = { samples: [], stopped: false });
      const tick = async () => {
        if (s.stopped) return;
        const c = window.sfuClient;
        const info = c.remoteTracks[trackId];
        const transceiver = c.subscribePc?.getTransceivers().find((t) => t.mid === info?.mid);
        let inbound = null;
        if (transceiver) {
          (await transceiver.receiver.getStats()).forEach((r) => {
            if (r.type === 'inbound-rtp') inbound = r;
          });
        }
        s.samples.push({
          t: Math.round(performance.now()),
          framesDecoded: inbound?.framesDecoded ?? 0,
          frameWidth: inbound?.frameWidth ?? 0,
          frameHeight: inbound?.frameHeight ?? 0,
          freezeCount: inbound?.freezeCount ?? 0,
          totalFreezesDuration: inbound?.totalFreezesDuration ?? 0,
          keyFramesDecoded: inbound?.keyFramesDecoded ?? 0,
          bytesReceived: inbound?.bytesReceived ?? 0,
        });
        // The next sample a period after this one started, whatever getStats took.
        setTimeout(tick, Math.max(0, periodMs - (performance.now() - s.samples.at(-1).t)));
      };
      tick();
    },
    { key, trackId, periodMs },
  );
  return sampler(participant, key);
}

/** Like sampleInboundVideo, for `participant.publishStats()` (outbound-rtp per mid/rid). */
export async function samplePublished(participant, periodMs = 500) {
  const key = 'published';
  await participant.evaluate(
    ({ key, periodMs }) => {
      const samplers = (window.__e2eSamplers ??= {});
      const s = (samplers[key] = { samples: [], stopped: false });
      const tick = async () => {
        if (s.stopped) return;
        const t = Math.round(performance.now());
        s.samples.push({ t, layers: await window.sfuClient.publishStats() });
        setTimeout(tick, periodMs);
      };
      tick();
    },
    { key, periodMs },
  );
  return sampler(participant, key);
}

function sampler(participant, key) {
  let last = [];
  const fetch = async (stop) => {
    if (participant.page.isClosed()) return last;
    last = await participant.evaluate(
      ({ key, stop }) => {
        const s = window.__e2eSamplers[key];
        if (stop) s.stopped = true;
        return s.samples;
      },
      { key, stop },
    );
    return last;
  };
  return {
    read: () => fetch(false),
    stop: () => fetch(true),
    /** The samples last fetched (for failure reports, without touching the page). */
    get last() {
      return last;
    },
  };
}

/** The page's performance.now() (to relate a Node-side event to the page's samples). */
export function pageNow(participant) {
  return participant.evaluate(() => performance.now());
}

/**
 * The longest time, in ms, during which framesDecoded did not rise within `samples` (from the
 * first sample to the last): how long decoding stalled at worst.
 */
export function longestDecodingGap(samples) {
  if (samples.length < 2) return Infinity;
  let longest = 0;
  let lastIncrease = samples[0].t;
  for (let i = 1; i < samples.length; i++) {
    if (samples[i].framesDecoded > samples[i - 1].framesDecoded) {
      longest = Math.max(longest, samples[i].t - lastIncrease);
      lastIncrease = samples[i].t;
    }
  }
  return Math.max(longest, samples.at(-1).t - lastIncrease);
}

/** Samples as compact text lines: "t=…ms frames=… 320x180 …" in the page's clock (for reports). */
export function formatInbound(samples) {
  return samples
    .map(
      (s) =>
        `  t=${s.t}ms frames=${s.framesDecoded} ${s.frameWidth}x${s.frameHeight} ` +
        `keyframes=${s.keyFramesDecoded} freezes=${s.freezeCount} bytes=${s.bytesReceived}`,
    )
    .join('\n');
}

/** publishStats samples as text lines: "t=…ms 1/q 320x180 20fps 12345B | 1/h …". */
export function formatPublished(samples) {
  return samples
    .map(
      (s) =>
        `  t=${s.t}ms ` +
        Object.entries(s.layers)
          .filter(([, l]) => l.kind === 'video')
          .map(
            ([k, l]) =>
              `${k} ${l.frameWidth ?? '-'}x${l.frameHeight ?? '-'} ${l.framesPerSecond ?? '-'}fps ` +
              `${l.bytesSent}B${l.qualityLimitationReason && l.qualityLimitationReason !== 'none' ? ` (${l.qualityLimitationReason})` : ''}`,
          )
          .join(' | '),
    )
    .join('\n');
}

/** Whether a sample shows a resolution within `want` ({minWidth?, maxWidth?}). */
export const fitsWidth = (s, want) =>
  s.frameWidth > 0 && (want.maxWidth === undefined || s.frameWidth <= want.maxWidth) &&
  (want.minWidth === undefined || s.frameWidth >= want.minWidth);

/**
 * Checks that each viewer (`{p, sampler, [key]: want}`) holds the wanted resolution for
 * `sustainMs` without a single sample outside it, and keeps decoding. The window starts
 * where the viewer's current run of fitting samples began (waiting up to 5 s for its latest
 * sample to fit): a transient before the viewer settled on the layer (congestion control
 * starting low after a keyframe of the asked layer) is not part of the hold, any sample
 * outside it afterwards is.
 */
export async function holds(viewers, key, sustainMs) {
  const since = await Promise.all(
    viewers.map((v) =>
      waitFor(
        async () => {
          const samples = await v.sampler.read();
          if (!samples.length || !fitsWidth(samples.at(-1), v[key])) return undefined;
          const lastWrong = samples.findLastIndex((s) => !fitsWidth(s, v[key]));
          return samples[lastWrong + 1].t;
        },
        { timeout: 5_000, interval: 100, what: `${v.p.name}'s samples to show ${v[key].label}` },
      ),
    ),
  );
  const windowEnds = since.map((t) => t + sustainMs);
  await waitFor(
    async () => {
      const all = await Promise.all(viewers.map((v) => v.sampler.read()));
      return all.every((samples, i) => samples.at(-1).t >= windowEnds[i]);
    },
    { timeout: sustainMs + 10_000, interval: 100, what: `a ${sustainMs} ms measuring window` },
  );
  const problems = [];
  for (const [i, v] of viewers.entries()) {
    const span = (await v.sampler.read()).filter((s) => s.t >= since[i] && s.t <= windowEnds[i]);
    const wrong = span.filter((s) => !fitsWidth(s, v[key]));
    const frames = span.at(-1).framesDecoded - span[0].framesDecoded;
    if (wrong.length) {
      problems.push(
        `${v.p.name}: ${wrong.length} of ${span.length} samples over ${sustainMs} ms were not ${v[key].label}: ` +
          wrong.slice(0, 5).map((s) => `${s.frameWidth}x${s.frameHeight}`).join(', '),
      );
    }
    if (frames < 20) problems.push(`${v.p.name}: only ${frames} frames decoded in ${sustainMs} ms at ${v[key].label}`);
  }
  if (problems.length) throw new Error(problems.join('\n'));
}
