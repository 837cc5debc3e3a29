import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export const BUSYBOX_IMAGE = 'agent-platform/busybox:latest';
const BUSYBOX_BINARY = '/bin/busybox';

/**
 * True when the ELF file has no program interpreter (PT_INTERP), i.e. is statically
 * linked: a dynamic busybox would not run in a FROM-scratch image.
 */
export async function isStaticElf(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const header = Buffer.alloc(64);
    await file.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2) return false; // not ELF64
    const little = header[5] === 1;
    const u16 = (b: Buffer, o: number): number => (little ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number): number => (little ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = Number(little ? header.readBigUInt64LE(0x20) : header.readBigUInt64BE(0x20));
    const phentsize = u16(header, 0x36);
    const phnum = u16(header, 0x38);
    const table = Buffer.alloc(phentsize * phnum);
    await file.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (u32(table, i * phentsize) === 3) return false; // PT_INTERP
    return true;
  } finally {
    await file.close();
  }
}

const dockerArgs = (dockerHost: string | undefined, args: string[]): string[] => (dockerHost ? ['-H', dockerHost, ...args] : args);

async function imageExists(image: string, dockerHost: string | undefined): Promise<boolean> {
  try {
    await exec('docker', dockerArgs(dockerHost, ['image', 'inspect', '--format', '{{.Id}}', image]));
    return true;
  } catch {
    return false;
  }
}

async function staticBusyboxPresent(): Promise<boolean> {
  try {
    return await isStaticElf(BUSYBOX_BINARY);
  } catch {
    return false;
  }
}

/**
 * Makes sure `agent-platform/busybox:latest` (static busybox in FROM scratch, about
 * 2 MB) exists on the daemon, building it from the host's /bin/busybox when missing
 * (installing Debian's busybox-static first if needed). scripts/build-images.sh builds
 * the same image; this helper lets tests run without that step. Idempotent.
 */
export async function ensureBusyboxImage(dockerHost = process.env.DOCKER_HOST): Promise<string> {
  if (await imageExists(BUSYBOX_IMAGE, dockerHost)) return BUSYBOX_IMAGE;
  if (!(await staticBusyboxPresent())) {
    await exec('apt-get', ['install', '-y', 'busybox-static'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (!(await staticBusyboxPresent())) throw new Error(`${BUSYBOX_BINARY} is not a static binary even after installing busybox-static`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'busybox-image-'));
  try {
    await copyFile(BUSYBOX_BINARY, join(dir, 'busybox'));
    await writeFile(
      join(dir, 'Dockerfile'),
      ['FROM scratch', 'COPY busybox /bin/busybox', 'RUN ["/bin/busybox", "--install", "-s", "/bin"]', 'ENV PATH=/bin', ''].join('\n'),
    );
    await exec('docker', dockerArgs(dockerHost, ['build', '--pull=false', '-q', '-t', BUSYBOX_IMAGE, dir]), { timeout: 120_000 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return BUSYBOX_IMAGE;
}
