// Assertions about media actually flowing, read from getStats through window.sfuClient.stats().

import { sleep, waitFor } from './wait.mjs';

const FIRST_MEDIA_DEADLINE_MS = 30_000;
const FLOW_WINDOW_MS = 5_000;
const FLOW_SAMPLES = 3; // samples over the window, each must be ahead of the one before
const MIN_FRAMES_IN_WINDOW = 25; // the fake camera runs at 20 fps: 100 expected

/**
 * Waits until `receiver` gets a video and an audio track from `sender`, decodes video and
 * receives audio. Resolves with the two track ids.
 */
export async function waitForMediaFrom(receiver, sender) {
  return waitFor(
    async () => {
      const stats = Object.entries(await receiver.stats()).filter(([, s]) => s.participant === sender.sid);
      const video = stats.find(([, s]) => s.kind === 'video' && s.framesDecoded > 0 && s.frameWidth > 0);
      const audio = stats.find(([, s]) => s.kind === 'audio' && (s.totalSamplesReceived > 0 || s.bytesReceived > 0));
      return video && audio && { video: video[0], audio: audio[0] };
    },
    {
      timeout: FIRST_MEDIA_DEADLINE_MS,
      what: `${receiver.name} to decode video and receive audio from ${sender.name}`,
    },
  );
}

/**
 * Proves media keeps flowing on every (receiver, sender) pair: over at least 5 s, framesDecoded
 * of the sender's video and totalSamplesReceived (or bytesReceived) of its audio rise at every
 * sample. All pairs are sampled in the same window. Also checks that each receiving page renders
 * the video (its <video> element has a size) and plays the audio in an <audio> element.
 */
export async function expectMediaFlowing(pairs) {
  const ids = await Promise.all(pairs.map(([receiver, sender]) => waitForMediaFrom(receiver, sender)));

  const samples = [];
  for (let i = 0; i < FLOW_SAMPLES; i++) {
    if (i > 0) await sleep(FLOW_WINDOW_MS / (FLOW_SAMPLES - 1)); // a measuring window, not a wait for an event
    samples.push(await Promise.all(pairs.map(([receiver]) => receiver.stats())));
  }

  const problems = [];
  pairs.forEach(([receiver, sender], p) => {
    const label = `${sender.name} -> ${receiver.name}`;
    const series = (id, key) => samples.map((s) => s[p][id]?.[key] ?? 0);
    const frames = series(ids[p].video, 'framesDecoded');
    const samplesRx = series(ids[p].audio, 'totalSamplesReceived');
    const bytesRx = series(ids[p].audio, 'bytesReceived');
    if (!rising(frames) || frames.at(-1) - frames[0] < MIN_FRAMES_IN_WINDOW) {
      problems.push(`${label}: video framesDecoded did not keep rising over ${FLOW_WINDOW_MS} ms: ${frames}`);
    }
    if (!rising(samplesRx) && !rising(bytesRx)) {
      problems.push(`${label}: audio did not keep arriving: totalSamplesReceived ${samplesRx}, bytesReceived ${bytesRx}`);
    }
  });
  if (problems.length) throw new Error(problems.join('\n'));

  await Promise.all(
    pairs.map(async ([receiver, sender], p) => {
      await receiver.waitFor(
        ({ video, audio }) => {
          const v = document.querySelector(`video[data-track-id="${video}"]`);
          const a = document.querySelector(`audio[data-track-id="${audio}"]`);
          return v?.videoWidth > 0 && a?.srcObject?.getAudioTracks().length === 1 && !a.paused;
        },
        { arg: ids[p], what: `a rendered <video> and a playing <audio> of ${sender.name}` },
      );
    }),
  );
  return ids;
}

function rising(values) {
  return values.every((v, i) => i === 0 || v > values[i - 1]);
}

/** Every ordered pair of distinct participants: [[receiver, sender], …]. */
export function allPairs(participants) {
  return participants.flatMap((r) => participants.filter((s) => s !== r).map((s) => [r, s]));
}
