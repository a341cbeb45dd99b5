// A private link for one test: a network namespace joined to the root namespace by a veth pair
// with addresses of its own (10.213.X.Y/30), and `tc` shaping of the root→namespace direction.
// It owns only what it creates (names carry this process's pid) and removes them when the test
// ends, when the process exits, on SIGINT/SIGTERM, and (for a run that was SIGKILLed) at the next
// run's start. It must never touch other interfaces, addresses or namespaces.
//
// Needs root and iproute2 (`ip`, `tc`). The kernel of these machines has no netem: only `tbf`
// and `htb` shape (see /work/shared/reference/network.md), so this offers a rate limit only.

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const NS_PREFIX = 'sfu-e2e-';
const NS_PATTERN = /^sfu-e2e-(\d+)-([0-9a-f]{6})$/;

// Links still up: removed synchronously when the process exits, whatever the reason.
const live = new Set();
let exitHooked = false;

function hookExit() {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const link of live) link.destroySync();
  });
  // Killed by a signal, node would skip its 'exit' handlers (ours, the server's, Playwright's):
  // exit instead, so that all of them run.
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
    process.once(signal, () => process.exit(code));
  }
}

function run(cmd, args, { ignoreError = false } = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if (ignoreError) return '';
    const stderr = err.stderr?.toString().trim();
    throw new Error(`\`${cmd} ${args.join(' ')}\` failed${stderr ? `: ${stderr}` : ''}`);
  }
}

/**
 * Why this machine cannot run a namespaced test, or null if it can: tries to create and delete
 * a namespace (not root, no iproute2, or a kernel/container without network namespaces).
 */
export function namespaceSupport() {
  for (const tool of ['ip', 'tc']) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch {
      return `\`${tool}\` (iproute2) is not installed`;
    }
  }
  const probe = `${NS_PREFIX}${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  try {
    run('ip', ['netns', 'add', probe]);
  } catch (err) {
    return `cannot create a network namespace (${err.message})`;
  }
  run('ip', ['netns', 'del', probe], { ignoreError: true });
  return null;
}

/** Removes namespaces (and their veth pairs) left by test processes that no longer run. */
function sweepStale() {
  for (const name of run('ip', ['netns', 'list'], { ignoreError: true }).split('\n').map((l) => l.split(' ')[0])) {
    const m = NS_PATTERN.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = err.code === 'EPERM';
    }
    if (alive) continue;
    run('ip', ['link', 'del', `sfe${m[2]}h`], { ignoreError: true });
    run('ip', ['netns', 'del', name], { ignoreError: true });
  }
}

/** 10.213.X.Y/30 not already on any interface of the root namespace. */
function freeSubnet() {
  const used = run('ip', ['-o', '-4', 'addr', 'show']);
  for (let attempt = 0; attempt < 50; attempt++) {
    const third = crypto.randomInt(0, 256);
    const base = crypto.randomInt(0, 64) * 4;
    const net = `10.213.${third}.`;
    const host = `${net}${base + 1}`;
    const peer = `${net}${base + 2}`;
    if (!used.includes(` ${host}/`) && !used.includes(` ${peer}/`) && !used.includes(` ${net}`)) {
      return { host, peer };
    }
  }
  throw new Error('no free 10.213.X.Y/30 found');
}

export class NamespaceLink {
  /**
   * Creates namespace `sfu-e2e-<pid>-<id>` holding `sfe<id>n` (address `.2`, default route
   * through the host side) and `lo`, and `sfe<id>h` in the root namespace (address `.1`).
   */
  static create() {
    hookExit();
    sweepStale();
    const id = crypto.randomBytes(3).toString('hex');
    const link = new NamespaceLink(id, freeSubnet());
    live.add(link);
    try {
      const { ns, hostIf, nsIf, hostAddr, nsAddr } = link;
      run('ip', ['netns', 'add', ns]);
      run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
      run('ip', ['link', 'set', nsIf, 'netns', ns]);
      run('ip', ['addr', 'add', `${hostAddr}/30`, 'dev', hostIf]);
      run('ip', ['link', 'set', hostIf, 'up']);
      run('ip', ['-n', ns, 'addr', 'add', `${nsAddr}/30`, 'dev', nsIf]);
      run('ip', ['-n', ns, 'link', 'set', nsIf, 'up']);
      run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      run('ip', ['-n', ns, 'route', 'add', 'default', 'via', hostAddr]);
      link.#waitUntilUp();
    } catch (err) {
      link.destroySync();
      throw err;
    }
    return link;
  }

  constructor(id, { host, peer }) {
    this.id = id;
    this.ns = `${NS_PREFIX}${process.pid}-${id}`;
    this.hostIf = `sfe${id}h`;
    this.nsIf = `sfe${id}n`;
    this.hostAddr = host;
    this.nsAddr = peer;
    this.rate = null; // the tbf rate now set on the host side, e.g. '600kbit'; null: none
    this.wrapperDir = null;
  }

  /**
   * Limits what the root namespace sends into the namespace (the host veth's egress) with a
   * token bucket: `rate` like '600kbit', `burst` (bucket size), `latency` (how long a packet
   * may wait in the queue before it is dropped). Adds the qdisc or changes the one there.
   */
  shape(rate, { burst = '32kbit', latency = '200ms' } = {}) {
    const verb = this.rate ? 'change' : 'add';
    run('tc', ['qdisc', verb, 'dev', this.hostIf, 'root', 'tbf', 'rate', rate, 'burst', burst, 'latency', latency]);
    this.rate = rate;
  }

  /** Removes the rate limit. */
  unshape() {
    if (!this.rate) return;
    run('tc', ['qdisc', 'del', 'dev', this.hostIf, 'root']);
    this.rate = null;
  }

  /** `tc -s qdisc` of the host side: bytes sent, drops, backlog (for reports). */
  qdiscStats() {
    return run('tc', ['-s', 'qdisc', 'show', 'dev', this.hostIf], { ignoreError: true }).trim();
  }

  /**
   * An executable that runs `binary` with its arguments inside the namespace: give it to
   * Playwright as `executablePath` (Playwright talks to the browser over inherited pipes, which
   * `ip netns exec` keeps). Removed with the link.
   */
  wrapper(binary) {
    this.wrapperDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-e2e-netns-'));
    const file = path.join(this.wrapperDir, 'in-namespace');
    fs.writeFileSync(file, `#!/bin/sh\nexec ip netns exec ${this.ns} ${binary} "$@"\n`, { mode: 0o755 });
    return file;
  }

  /**
   * Deletes the veth pair (both ends go together) and the namespace. Processes still inside
   * would keep the namespace alive: stop them first.
   */
  destroySync() {
    run('ip', ['link', 'del', this.hostIf], { ignoreError: true });
    run('ip', ['netns', 'del', this.ns], { ignoreError: true });
    if (this.wrapperDir) fs.rmSync(this.wrapperDir, { recursive: true, force: true });
    live.delete(this);
  }

  /** Whether this link's namespace or host interface still exists (for the cleanup check). */
  existsSync() {
    const namespaces = run('ip', ['netns', 'list'], { ignoreError: true });
    const links = run('ip', ['-o', 'link', 'show'], { ignoreError: true });
    return namespaces.split('\n').some((l) => l.split(' ')[0] === this.ns) || links.includes(` ${this.hostIf}@`);
  }

  // The address is usable once duplicate address detection is over (IPv4 has none) and the
  // veth carrier is up on both ends: poll the operstate a few times rather than assume it.
  #waitUntilUp() {
    for (let i = 0; i < 200; i++) {
      const state = run('ip', ['-o', 'link', 'show', this.hostIf], { ignoreError: true });
      if (/state UP/.test(state)) return;
      execFileSync('sleep', ['0.01']);
    }
    throw new Error(`${this.hostIf} did not come up`);
  }
}
