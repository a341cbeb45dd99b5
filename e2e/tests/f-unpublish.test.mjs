// f. Unpublishing one track: when Alice stops publishing her camera (`unpublish`), Bob's page
//    removes that video element and stops receiving it, while Alice's tile and audio stay.

import { test } from 'node:test';
import { expectMediaFlowing, waitForMediaFrom } from '../lib/media.mjs';
import { withRoom } from '../lib/room.mjs';

test('an unpublished track ends on the other pages, the rest stays', { timeout: 120_000 }, () =>
  withRoom(async (room) => {
    const alice = await room.join('Alice');
    const bob = await room.join('Bob');
    const ids = await waitForMediaFrom(bob, alice);
    const { mid } = (await bob.evaluate(() => window.sfuClient.remoteTracks))[ids.video];

    await alice.evaluate(() => window.sfuClient.unpublish('video'));
    await alice.waitFor(
      () => {
        const c = window.sfuClient;
        return !Object.values(c.localTracks).some((t) => t.kind === 'video') && c.lastError === null;
      },
      { what: 'the camera to be unpublished without error' },
    );

    await bob.waitFor(
      ({ id, mid, sid }) => {
        const c = window.sfuClient;
        const transceiver = c.subscribePc.getTransceivers().find((t) => t.mid === mid);
        return (
          !c.remoteTracks[id] &&
          !c.publishedTracks[id] &&
          !document.querySelector(`[data-track-id="${id}"]`) &&
          !['recvonly', 'sendrecv'].includes(transceiver?.currentDirection) &&
          c.participants[sid] &&
          document.querySelector(`.tile.remote[data-sid="${sid}"] audio`)
        );
      },
      { arg: { id: ids.video, mid, sid: alice.sid }, what: "Alice's video to end while her tile and audio stay" },
    );

    // Her audio still arrives and plays.
    const audioBefore = (await bob.stats())[ids.audio].totalSamplesReceived;
    await bob.waitFor(
      ({ id, before }) => window.sfuClient.stats().then((s) => s[id]?.totalSamplesReceived > before + 48_000),
      { arg: { id: ids.audio, before: audioBefore }, what: "Alice's audio to keep arriving" },
    );
    // And Bob's media still reaches Alice.
    await expectMediaFlowing([[alice, bob]]);
  }));
