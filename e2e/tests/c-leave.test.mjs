// c. A participant who clicks Leave disappears from the others' pages: their entry, tile and
//    media elements are removed and the subscribe connections stop receiving their tracks. The
//    others keep exchanging media, and someone joining afterwards is received by everyone
//    (the subscribe connections renegotiate after removals).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allPairs, expectMediaFlowing, waitForMediaFrom } from '../lib/media.mjs';
import { withRoom } from '../lib/room.mjs';

test('a participant who leaves disappears from the others and its tracks end', { timeout: 180_000 }, () =>
  withRoom(async (room) => {
    const alice = await room.join('Alice');
    const bob = await room.join('Bob');
    const carol = await room.join('Carol');
    const seen = [];
    for (const viewer of [alice, carol]) {
      await waitForMediaFrom(viewer, bob);
      await viewer.waitUntilShows(bob);
      const tracks = await viewer.tracksFrom(bob);
      assert.equal(tracks.length, 2, `${viewer.name} receives Bob's audio and video`);
      seen.push([viewer, tracks]);
    }

    await bob.page.click('#leave');
    await bob.waitFor(() => !window.sfuClient.joined && !document.querySelector('.tile'), {
      what: 'Bob to be out of the room',
    });
    for (const [viewer, tracks] of seen) {
      await viewer.waitUntilGone(
        bob,
        tracks.map((t) => t.id),
        tracks.map((t) => t.mid),
      );
    }
    await bob.page.close(); // two cores: keep three pages at most

    const dave = await room.join('Dave');
    await expectMediaFlowing(allPairs([alice, carol, dave]));
    for (const [me, other] of allPairs([alice, carol, dave])) await me.waitUntilShows(other);
  }));
