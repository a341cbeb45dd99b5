// i. Active speaker: every page's fake microphone plays a steady 440 Hz tone (a WAV made here,
//    via --use-file-for-fake-audio-capture; echo cancellation, noise suppression and gain
//    control off so the level stays). Speaker and Quiet join with the microphone off; Speaker
//    turns it on: the server's `active_speaker` names Speaker on both pages and Speaker's tile is
//    highlighted, while Quiet, whose microphone stays off, is never named. When Speaker turns the
//    microphone off again, `active_speaker` goes to null and the highlight goes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { withRoom } from '../lib/room.mjs';
import { writeToneWav } from '../lib/tone.mjs';
import { sleep } from '../lib/wait.mjs';

const HOLD_MS = 3_000; // how long the floor must stay with the speaker
const QUERY = { audioprocessing: '0', mic: 'off' };

test('the participant who speaks becomes the active speaker, a muted one never does', { timeout: 120_000 }, async (t) => {
  const tone = await writeToneWav({ frequency: 440, amplitude: 0.5, seconds: 5 });
  try {
    await withRoom(
      async (room) => {
        const speaker = await room.join('Speaker', { query: QUERY });
        const quiet = await room.join('Quiet', { query: QUERY });
        const pages = [speaker, quiet];
        await Promise.all(pages.map((p) => p.waitUntilShows(p === speaker ? quiet : speaker)));
        // Both receive the other's (muted) audio, so both take part in the room's audio.
        await speaker.waitFor(() => Object.values(window.sfuClient.remoteTracks).some((t) => t.kind === 'audio'), {
          what: "Quiet's audio track",
        });

        const unmutedAt = Date.now();
        await speaker.page.click('#mic');
        for (const p of pages) {
          await p.waitFor(
            (sid) => {
              const c = window.sfuClient;
              const tile = c.self.sid === sid ? document.querySelector('.tile.local') : document.querySelector(`.tile.remote[data-sid="${sid}"]`);
              return c.activeSpeaker === sid && tile?.classList.contains('speaking') && document.querySelectorAll('.tile.speaking').length === 1;
            },
            { arg: speaker.sid, what: "Speaker to be the active speaker, with the only highlighted tile", timeout: 15_000 },
          );
        }
        t.diagnostic(`Speaker was the active speaker on both pages ${Date.now() - unmutedAt} ms after unmuting (polled)`);

        await sleep(HOLD_MS); // a window in which the floor must not move
        for (const p of pages) {
          const seen = await activeSpeakerEvents(p);
          assert.equal(await p.evaluate(() => window.sfuClient.activeSpeaker), speaker.sid, `${p.name}: Speaker keeps the floor`);
          assert.ok(!seen.includes(quiet.sid), `${p.name} never saw Quiet as the active speaker: ${JSON.stringify(seen)}`);
        }

        // A newcomer is told the current speaker right after `joined`.
        await t.test(
          'someone joining while Speaker speaks learns who the active speaker is',
          async () => {
            const late = await room.join('Latecomer', { query: { media: '0' } });
            await late.waitFor((sid) => window.sfuClient.activeSpeaker === sid, {
              arg: speaker.sid,
              what: 'Speaker to be the active speaker',
              timeout: 5_000,
            });
          },
        );

        const mutedAt = Date.now();
        await speaker.page.click('#mic');
        for (const p of pages) {
          await p.waitFor(
            () => window.sfuClient.activeSpeaker === null && document.querySelectorAll('.tile.speaking').length === 0,
            { what: 'nobody to be the active speaker once Speaker is muted', timeout: 15_000 },
          );
        }
        t.diagnostic(`active speaker null on both pages ${Date.now() - mutedAt} ms after muting (polled)`);
        for (const p of pages) {
          const seen = await activeSpeakerEvents(p);
          t.diagnostic(`${p.name} saw active_speaker: ${seen.map((s) => (s === speaker.sid ? 'Speaker' : s === quiet.sid ? 'Quiet' : s ?? 'nobody')).join(' -> ')}`);
          assert.ok(!seen.includes(quiet.sid), `${p.name} never saw Quiet as the active speaker: ${JSON.stringify(seen)}`);
        }
      },
      { chromiumArgs: [`--use-file-for-fake-audio-capture=${tone.file}`] },
    );
  } finally {
    await tone.remove();
  }
});

/** The `participant` of every active_speaker event the page received, oldest first. */
function activeSpeakerEvents(p) {
  return p.evaluate(() =>
    window.sfuClient.frameLog.filter((f) => f.dir === 'in' && f.frame.type === 'active_speaker').map((f) => f.frame.participant),
  );
}
