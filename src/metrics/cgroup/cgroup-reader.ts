import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupLayout } from './cgroup-layout.js';
import { CgroupParseError } from './cgroup-parse-error.js';
import { CGROUP_V1_FILES, parseCgroupV1, type CgroupV1Files } from './cgroup-v1.js';
import { CGROUP_V2_FILES, parseCgroupV2, type CgroupV2Files } from './cgroup-v2.js';
import type { ContainerUsageFields } from './container-usage.js';

/**
 * Where Docker puts a container's cgroup, relative to the cgroup root (v2) or to each
 * controller's mount (v1); `{id}` is the full container id. The cgroupfs driver uses
 * `docker/<id>`, the systemd driver `system.slice/docker-<id>.scope`. A daemon started with
 * `--cgroup-parent` needs its own template.
 */
export const DEFAULT_CONTAINER_CGROUP_PATHS: readonly string[] = ['docker/{id}', 'system.slice/docker-{id}.scope'];

/** Docker's full ids; anything else (short ids, names) cannot name a cgroup directory. */
const FULL_CONTAINER_ID = /^[0-9a-f]{64}$/;

interface FileToRead {
  key: string;
  path: string;
  optional: boolean;
}

/** The absolute files of one container, resolved once and cached. */
interface ResolvedContainer {
  files: FileToRead[];
}

/**
 * Reads the cgroup files of containers under one detected layout. It resolves each
 * container's directory once (a few `stat` calls) and caches the file list, so a steady
 * scrape costs only the reads themselves.
 */
export class CgroupReader {
  private readonly resolved = new Map<string, ResolvedContainer>();
  /** Shared by all sync reads: cgroup files are small, and one buffer saves an allocation per file. */
  private readonly buffer = Buffer.allocUnsafe(64 * 1024);

  constructor(
    private readonly layout: CgroupLayout,
    private readonly containerPaths: readonly string[] = DEFAULT_CONTAINER_CGROUP_PATHS,
  ) {}

  /**
   * Reads one container with blocking reads. Returns null when the container has no cgroup
   * directory here (unknown id, removed container, other layout). Throws CgroupParseError on
   * malformed files and the fs error on anything but "not found".
   */
  readSync(containerId: string): ContainerUsageFields | null {
    const container = this.resolve(containerId);
    if (container === null) return null;
    const contents: Record<string, string | undefined> = {};
    for (const file of container.files) {
      const text = this.readOneSync(file.path);
      if (text === undefined && !file.optional) return this.vanished(containerId);
      contents[file.key] = text;
    }
    return this.parse(contents);
  }

  /** Like readSync, with fs.promises reads of the container's files in parallel. */
  async readAsync(containerId: string): Promise<ContainerUsageFields | null> {
    const container = this.resolve(containerId);
    if (container === null) return null;
    const texts = await Promise.all(container.files.map((file) => readFile(file.path, 'latin1').catch(ignoreNotFound)));
    const contents: Record<string, string | undefined> = {};
    for (const [index, file] of container.files.entries()) {
      if (texts[index] === undefined && !file.optional) return this.vanished(containerId);
      contents[file.key] = texts[index];
    }
    return this.parse(contents);
  }

  /** Drops cached paths of containers not in `keep`, so the cache follows the live set. */
  retainOnly(keep: ReadonlySet<string>): void {
    for (const id of this.resolved.keys()) if (!keep.has(id)) this.resolved.delete(id);
  }

  /** Number of containers whose paths are cached (for tests and diagnostics). */
  get cachedCount(): number {
    return this.resolved.size;
  }

  private resolve(containerId: string): ResolvedContainer | null {
    const cached = this.resolved.get(containerId);
    if (cached !== undefined) return cached;
    if (!FULL_CONTAINER_ID.test(containerId) || this.layout.version === 'none') return null;
    const layout = this.layout;
    for (const template of this.containerPaths) {
      const relative = template.replaceAll('{id}', containerId);
      let files: FileToRead[];
      if (layout.version === 2) {
        const dir = join(layout.root, relative);
        if (!existsSync(dir)) continue;
        files = CGROUP_V2_FILES.map((f) => ({ key: f.key, path: join(dir, f.file), optional: f.optional }));
      } else {
        // The memory hierarchy decides whether the template matches; Docker creates the
        // container's directory in every controller with the same relative path.
        const memoryDir = layout.controllerDirs.memory;
        if (memoryDir === null || !existsSync(join(memoryDir, relative))) continue;
        files = [];
        for (const f of CGROUP_V1_FILES) {
          const controllerDir = layout.controllerDirs[f.controller];
          if (controllerDir === null) continue; // only optional controllers (pids) can be unmounted
          files.push({ key: f.key, path: join(controllerDir, relative, f.file), optional: f.optional });
        }
      }
      const container = { files };
      this.resolved.set(containerId, container);
      return container;
    }
    return null;
  }

  private parse(contents: Record<string, string | undefined>): ContainerUsageFields {
    return this.layout.version === 2
      ? parseCgroupV2(contents as unknown as CgroupV2Files)
      : parseCgroupV1(contents as unknown as CgroupV1Files);
  }

  /** A required file disappeared: the container was removed since its path was cached. */
  private vanished(containerId: string): null {
    this.resolved.delete(containerId);
    return null;
  }

  private readOneSync(path: string): string | undefined {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      return ignoreNotFound(error);
    }
    try {
      // cgroup files report a size of 0 or 4096 whatever they hold, so read until EOF
      // rather than trusting fstat (which is what readFileSync would call first).
      let length = 0;
      let n: number;
      while ((n = readSync(fd, this.buffer, length, this.buffer.length - length, null)) > 0) {
        length += n;
        if (length === this.buffer.length) throw new CgroupParseError(path, `larger than ${this.buffer.length} bytes`);
      }
      return this.buffer.toString('latin1', 0, length);
    } catch (error) {
      // A cgroup removed between open and read fails with ENODEV on v1.
      return ignoreNotFound(error);
    } finally {
      closeSync(fd);
    }
  }
}

function ignoreNotFound(error: unknown): undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENODEV' || code === 'ENOTDIR') return undefined;
  throw error;
}
