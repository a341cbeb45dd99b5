// g. A long meeting with churn (about 75 s): 80 people with camera and microphone come and go
//    while Alice stays. Alice must stay in the room and keep receiving newcomers. Finished
//    subscribe sections are reused, so her SDP must not outgrow the signaling frame limit (it
//    did before the fix: ~70 departures closed her session).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitForMediaFrom } from '../lib/media.mjs';
import { withRoom } from '../lib/room.mjs';

const ROUNDS = 20;
const GUESTS_PER_ROUND = 4;

test(
  'a participant stays connected while 80 others come and go',
  { timeout: 600_000 },
  () =>
    withRoom(async (room) => {
      const alice = await room.join('Alice');
      const state = () =>
        alice.evaluate(() => ({
          joined: window.sfuClient.joined,
          lastError: window.sfuClient.lastError,
          subscribeAnswerBytes: window.sfuClient.sdp.subscribeAnswer?.length ?? 0,
        }));
      for (let round = 0; round < ROUNDS; round++) {
        const names = Array.from({ length: GUESTS_PER_ROUND }, (_, i) => `Guest ${round * GUESTS_PER_ROUND + i}`);
        const guests = await Promise.all(names.map((name) => room.join(name)));
        await alice.waitFor(
          (sids) =>
            !window.sfuClient.joined ||
            sids.every((sid) => Object.values(window.sfuClient.remoteTracks).filter((t) => t.participant === sid).length === 2),
          { arg: guests.map((g) => g.sid), what: `round ${round}: the guests' tracks` },
        );
        await Promise.all(guests.map((g) => g.page.close()));
        // Closed pages have nothing more to say in a failure report.
        room.participants = room.participants.filter((p) => !guests.includes(p));
        await alice.waitFor(() => !window.sfuClient.joined || Object.keys(window.sfuClient.participants).length === 0, {
          what: `round ${round}: the guests to be gone`,
        });
        const s = await state();
        assert.ok(s.joined, `Alice was disconnected in round ${round}: ${JSON.stringify(s)}`);
      }
      const last = await room.join('Last guest');
      await waitForMediaFrom(alice, last);
      const s = await state();
      assert.ok(s.joined && s.lastError === null, JSON.stringify(s));
    }),
);
