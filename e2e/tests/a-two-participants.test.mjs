// a. Two participants in one room publish camera and microphone; each decodes the other's video
//    and receives the other's audio, continuously for at least 5 s, and sees the other's name.

import { test } from 'node:test';
import { allPairs, expectMediaFlowing } from '../lib/media.mjs';
import { withRoom } from '../lib/room.mjs';

test('two participants exchange audio and video and see each other', { timeout: 120_000 }, () =>
  withRoom(async (room) => {
    const alice = await room.join('Alice');
    const bob = await room.join('Bob');

    await expectMediaFlowing(allPairs([alice, bob]));
    await alice.waitUntilShows(bob);
    await bob.waitUntilShows(alice);
  }));
