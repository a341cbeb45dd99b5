// e. A participant whose tab closes without `leave` (the WebSocket just drops) is removed from
//    the others' pages like one who left.

import { test } from 'node:test';
import { waitForMediaFrom } from '../lib/media.mjs';
import { withRoom } from '../lib/room.mjs';

test('a participant whose tab closes disappears from the others', { timeout: 120_000 }, () =>
  withRoom(async (room) => {
    const alice = await room.join('Alice');
    const bob = await room.join('Bob');
    await waitForMediaFrom(alice, bob);
    const tracks = await alice.tracksFrom(bob);

    await bob.page.close();
    await alice.waitUntilGone(
      bob,
      tracks.map((t) => t.id),
      tracks.map((t) => t.mid),
    );
  }));
