// Starts and stops one sfu-server for one test, on ports of its own.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StopWaiting, waitFor } from './wait.mjs';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SERVER_BIN = process.env.SFU_SERVER_BIN
  ? path.resolve(process.env.SFU_SERVER_BIN)
  : path.join(REPO_ROOT, 'target', 'debug', 'sfu-server');

const OUTPUT_LINES_KEPT = 400;
const STARTUP_DEADLINE_MS = 30_000;
const STOP_GRACE_MS = 5_000;

// Children still running when the test process exits for any reason (a timeout, an uncaught
// error) are killed here, so no server outlives its test.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export class Server {
  constructor(child, host, httpPort, udpPort, cwd) {
    this.child = child;
    this.cwd = cwd;
    this.host = host;
    this.httpPort = httpPort;
    this.udpPort = udpPort;
    this.url = `http://${host}:${httpPort}`;
    this.output = [];
    this.exited = null; // {code, signal} once the process has ended
    this.exitPromise = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exited = { code, signal };
        running.delete(child);
        resolve();
      });
    });
    for (const [name, stream] of [['out', child.stdout], ['err', child.stderr]]) {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop();
        for (const line of lines) this.#keep(name, line);
      });
      stream.on('end', () => partial && this.#keep(name, partial));
    }
  }

  /**
   * Starts the server and resolves once `GET /healthz` answers 200. It listens for HTTP and UDP
   * on `host` (an IPv4 address of this machine, 127.0.0.1 by default), which is also the address
   * its ICE candidates announce: e.g. the host side of a veth pair, so that a browser in a
   * network namespace reaches it (lib/netns.mjs). `args` are more flags of sfu-server (e.g.
   * `['--workers', '2']`).
   */
  static async start({ host = '127.0.0.1', args = [] } = {}) {
    if (!fs.existsSync(SERVER_BIN)) {
      throw new Error(
        `no server binary at ${SERVER_BIN}: run \`cargo build -p sfu-server\` in ${REPO_ROOT} ` +
          'or point SFU_SERVER_BIN at one',
      );
    }
    // Its own working directory, so that nothing it writes is shared with another test.
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-e2e-server-'));
    const httpPort = await freeTcpPort(host);
    const udpPort = await freeUdpPort(host);
    const child = spawn(
      SERVER_BIN,
      ['--http-listen', `${host}:${httpPort}`, '--udp-listen', `${host}:${udpPort}`, '--dev', ...args],
      {
        cwd,
        env: {
          ...process.env,
          // rtc_dtls warns about every TLS 1.3 extension of every Chrome ClientHello: that would
          // push everything else out of the output kept for diagnostics.
          RUST_LOG: process.env.RUST_LOG ?? 'info,rtc_dtls=error',
          RUST_BACKTRACE: '1',
          NO_COLOR: '1',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    running.add(child);
    const server = new Server(child, host, httpPort, udpPort, cwd);
    try {
      await waitFor(
        async () => {
          if (server.exited) {
            throw new StopWaiting(`sfu-server exited during startup (${JSON.stringify(server.exited)})`);
          }
          try {
            const res = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(2_000) });
            return res.status === 200;
          } catch {
            return false;
          }
        },
        { timeout: STARTUP_DEADLINE_MS, what: `GET ${server.url}/healthz to answer 200` },
      );
    } catch (err) {
      await server.stop();
      err.message += `\n--- sfu-server output ---\n${server.tail()}`;
      throw err;
    }
    return server;
  }

  /** SIGTERM, then SIGKILL if it has not exited within a few seconds. */
  async stop() {
    if (!this.exited) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS);
      await this.exitPromise;
      clearTimeout(timer);
    }
    fs.rmSync(this.cwd, { recursive: true, force: true });
  }

  /** The last lines the server printed. */
  tail(lines = 120) {
    const kept = this.output.slice(-lines);
    const header = this.exited ? `(exited: ${JSON.stringify(this.exited)})\n` : '';
    return header + (kept.length ? kept.join('\n') : '(no output)');
  }

  #keep(stream, line) {
    this.output.push(`${stream}| ${line.replace(/\x1b\[[0-9;]*m/g, '')}`);
    if (this.output.length > OUTPUT_LINES_KEPT) this.output.shift();
  }
}

function freeTcpPort(host) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function freeUdpPort(host) {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    sock.on('error', reject);
    sock.bind(0, host, () => {
      const { port } = sock.address();
      sock.close(() => resolve(port));
    });
  });
}
