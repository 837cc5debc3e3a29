import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/**
 * A Linux bridge of its own for a private test dockerd. `dockerd --bridge none` deletes
 * the host's `docker0` on start (moby's removeDefaultBridgeInterface), which breaks the
 * main daemon's default network for everything after it; giving each private daemon
 * its own bridge leaves docker0 alone.
 */
export interface PrivateBridge {
  name: string;
  remove(): Promise<void>;
}

export async function createPrivateBridge(): Promise<PrivateBridge> {
  const name = `apd${randomBytes(4).toString('hex')}`; // 11 chars: within IFNAMSIZ
  const third = 100 + (randomBytes(1)[0]! % 150);
  await exec('ip', ['link', 'add', 'name', name, 'type', 'bridge']);
  try {
    await exec('ip', ['addr', 'add', `10.213.${third}.1/24`, 'dev', name]);
    await exec('ip', ['link', 'set', name, 'up']);
  } catch (err) {
    await exec('ip', ['link', 'delete', name]).catch(() => undefined);
    throw err;
  }
  return {
    name,
    remove: async () => {
      await exec('ip', ['link', 'delete', name]).catch(() => undefined);
    },
  };
}
