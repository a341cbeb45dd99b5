// A WAV file of a steady sine tone, for Chrome's --use-file-for-fake-audio-capture.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * Writes a 16-bit mono PCM WAV of a `frequency` Hz sine at `amplitude` (0..1 of full scale)
 * lasting `seconds` into a new temporary directory. Resolves with {file, remove()}.
 */
export async function writeToneWav({ frequency = 440, amplitude = 0.5, seconds = 10, sampleRate = 48_000 } = {}) {
  const samples = Math.round(seconds * sampleRate);
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) {
    const v = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * frequency * i) / sampleRate));
    data.writeInt16LE(v, i * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE(sampleRate * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sfu-e2e-tone-'));
  const file = path.join(dir, `tone-${frequency}hz.wav`);
  await fs.writeFile(file, Buffer.concat([header, data]));
  return { file, remove: () => fs.rm(dir, { recursive: true, force: true }) };
}
