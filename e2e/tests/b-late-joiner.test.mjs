// b. A third participant joining a running call receives both earlier participants' media, and
//    they receive the newcomer's (and keep receiving each other's).

import { test } from 'node:test';
import { allPairs, expectMediaFlowing, waitForMediaFrom } from '../lib/media.mjs';
import { withRoom } from '../lib/room.mjs';

test('a late joiner receives everyone and everyone receives the late joiner', { timeout: 150_000 }, () =>
  withRoom(async (room) => {
    const alice = await room.join('Alice');
    const bob = await room.join('Bob');
    await waitForMediaFrom(alice, bob);
    await waitForMediaFrom(bob, alice);

    const carol = await room.join('Carol');
    await expectMediaFlowing(allPairs([alice, bob, carol]));
    for (const [me, other] of allPairs([alice, bob, carol])) await me.waitUntilShows(other);
  }));
