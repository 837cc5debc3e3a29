import { describe, expect, it } from 'vitest';
import type { ContainerSpec } from '../runtime.js';
import { AGENT_UNROUTABLE_DNS_SERVER, buildContainerConfig, cpuSharesFromMillicores, resolveContainerConfigOptions } from './container-config.js';

const spec = (overrides: Partial<ContainerSpec> = {}): ContainerSpec => ({
  agentId: 'a1',
  tenantId: 'acme',
  name: 'worker',
  image: 'agent-samples/simple-python:latest',
  command: [],
  args: [],
  env: { MODE: 'batch', GREETING: 'hello world' },
  workingDir: '/work',
  cpuLimitMillicores: 1500,
  cpuRequestMillicores: 500,
  memoryLimitMiB: 256,
  pidsLimit: 128,
  tmpSizeMiB: 64,
  dataSizeMiB: 512,
  gpuDeviceIds: [],
  labels: { team: 'search' },
  ...overrides,
});

describe('buildContainerConfig', () => {
  it('builds the exact locked-down create request', () => {
    expect(buildContainerConfig(spec({ command: ['python', '-u'], args: ['main.py', '--fast'] }))).toEqual({
      name: 'ap-a1',
      body: {
        Image: 'agent-samples/simple-python:latest',
        Entrypoint: ['python', '-u'],
        Cmd: ['main.py', '--fast'],
        Env: ['MODE=batch', 'GREETING=hello world'],
        WorkingDir: '/work',
        User: '1000:1000',
        Labels: {
          team: 'search',
          'io.agent-platform.agent-id': 'a1',
          'io.agent-platform.tenant': 'acme',
          'io.agent-platform.managed': 'true',
          'io.agent-platform.network-mode': 'none',
        },
        Tty: false,
        OpenStdin: false,
        AttachStdin: false,
        AttachStdout: false,
        AttachStderr: false,
        HostConfig: {
          NanoCpus: 1_500_000_000,
          CpuShares: 512,
          Memory: 268_435_456,
          MemorySwap: 268_435_456,
          PidsLimit: 128,
          ReadonlyRootfs: true,
          Tmpfs: {
            '/tmp': 'rw,noexec,nosuid,nodev,size=64m,uid=1000,gid=1000,mode=1777',
            '/data': 'rw,nosuid,nodev,size=512m,uid=1000,gid=1000,mode=0700',
          },
          CapDrop: ['ALL'],
          SecurityOpt: ['no-new-privileges'],
          NetworkMode: 'none',
          Privileged: false,
          Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 1024 }],
          OomKillDisable: false,
          RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
          LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } },
          Init: false,
        },
      },
    });
  });

  it('keeps the image ENTRYPOINT and CMD when neither command nor args is given', () => {
    const { body } = buildContainerConfig(spec());
    expect('Entrypoint' in body).toBe(false);
    expect('Cmd' in body).toBe(false);
  });

  it('keeps the image ENTRYPOINT and replaces CMD when only args are given', () => {
    const { body } = buildContainerConfig(spec({ args: ['--help'] }));
    expect('Entrypoint' in body).toBe(false);
    expect(body.Cmd).toEqual(['--help']);
  });

  it('replaces ENTRYPOINT and drops the image CMD when only a command is given', () => {
    const { body } = buildContainerConfig(spec({ command: ['sh', '-c', 'echo hi'] }));
    expect(body.Entrypoint).toEqual(['sh', '-c', 'echo hi']);
    expect(body.Cmd).toEqual([]);
  });

  it('omits an empty working directory', () => {
    expect('WorkingDir' in buildContainerConfig(spec({ workingDir: undefined })).body).toBe(false);
    expect('WorkingDir' in buildContainerConfig(spec({ workingDir: '' })).body).toBe(false);
  });

  it('requests GPUs by device id and sets NVIDIA_VISIBLE_DEVICES, overriding a user value', () => {
    const { body } = buildContainerConfig(spec({ gpuDeviceIds: ['0', 'GPU-1234'], env: { NVIDIA_VISIBLE_DEVICES: 'all', A: '1' } }));
    expect(body.HostConfig.DeviceRequests).toEqual([{ Driver: 'nvidia', DeviceIDs: ['0', 'GPU-1234'], Capabilities: [['gpu']] }]);
    expect(body.Env).toEqual(['A=1', 'NVIDIA_VISIBLE_DEVICES=0,GPU-1234']);
  });

  it('has no device requests and strips a user NVIDIA_VISIBLE_DEVICES without GPUs', () => {
    const { body } = buildContainerConfig(spec({ env: { NVIDIA_VISIBLE_DEVICES: 'all' } }));
    expect('DeviceRequests' in body.HostConfig).toBe(false);
    expect(body.Env).toEqual([]);
  });

  it('does not let user labels override the platform labels', () => {
    const { body } = buildContainerConfig(
      spec({ labels: { 'io.agent-platform.agent-id': 'other', 'io.agent-platform.tenant': 'evil', 'io.agent-platform.managed': 'false' } }),
    );
    expect(body.Labels).toEqual({
      'io.agent-platform.agent-id': 'a1',
      'io.agent-platform.tenant': 'acme',
      'io.agent-platform.managed': 'true',
      'io.agent-platform.network-mode': 'none',
    });
  });

  it('drops every user label under the reserved prefix, also ones the platform does not set itself', () => {
    // A record stored before the API refused io.agent-platform.* labels: without an instance id
    // on the node, a kept "instance" label would put the container in another installation's
    // list() (and its orphan sweep); "egress" would claim a network policy it does not have.
    const labels = { team: 'ml', 'io.agent-platform.instance': 'someone-else', 'io.agent-platform.egress': 'open', 'io.agent-platform.anything': 'x', 'io.agent-platformer': 'kept' };
    expect(buildContainerConfig(spec({ labels })).body.Labels).toEqual({
      team: 'ml',
      'io.agent-platformer': 'kept',
      'io.agent-platform.agent-id': 'a1',
      'io.agent-platform.tenant': 'acme',
      'io.agent-platform.managed': 'true',
      'io.agent-platform.network-mode': 'none',
    });
    // With an instance id, the node's own wins; the user's is not merely overwritten but gone.
    expect(buildContainerConfig(spec({ labels }), { instanceId: 'mine' }).body.Labels).toEqual({
      team: 'ml',
      'io.agent-platformer': 'kept',
      'io.agent-platform.agent-id': 'a1',
      'io.agent-platform.tenant': 'acme',
      'io.agent-platform.managed': 'true',
      'io.agent-platform.network-mode': 'none',
      'io.agent-platform.instance': 'mine',
    });
  });

  it('applies node options: OCI runtime, network, uid/gid, nofile and log rotation', () => {
    const { body } = buildContainerConfig(spec(), {
      ociRuntime: 'runsc',
      networkMode: 'agents-internal',
      runAsUid: 2000,
      runAsGid: 3000,
      nofileLimit: 4096,
      logMaxSize: '50m',
      logMaxFiles: 5,
    });
    expect(body.User).toBe('2000:3000');
    expect(body.HostConfig).toMatchObject({
      Runtime: 'runsc',
      NetworkMode: 'agents-internal',
      Ulimits: [{ Name: 'nofile', Soft: 4096, Hard: 4096 }],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '50m', 'max-file': '5' } },
      Tmpfs: {
        '/tmp': 'rw,noexec,nosuid,nodev,size=64m,uid=2000,gid=3000,mode=1777',
        '/data': 'rw,nosuid,nodev,size=512m,uid=2000,gid=3000,mode=0700',
      },
    });
    expect('Runtime' in buildContainerConfig(spec()).body.HostConfig).toBe(false);
  });

  it('points DNS of agents on the internal network at an unroutable resolver, never at the host (CVE-2024-29018)', () => {
    expect(buildContainerConfig(spec({ networkName: 'ap-egress-x', egress: 'allowlist' })).body.HostConfig.Dns).toEqual([AGENT_UNROUTABLE_DNS_SERVER]);
    // Expose-only agents sit on the same network with mode none.
    expect(buildContainerConfig(spec({ networkName: 'ap-egress-x', egress: 'none' })).body.HostConfig.Dns).toEqual([AGENT_UNROUTABLE_DNS_SERVER]);
    expect(buildContainerConfig(spec({ networkName: 'bridge', egress: 'open' })).body.HostConfig.Dns).toBeUndefined();
    expect(buildContainerConfig(spec()).body.HostConfig.Dns).toBeUndefined();
  });

  it('does not share arrays with the spec', () => {
    const s = spec({ command: ['a'], args: ['b'], gpuDeviceIds: ['0'] });
    const { body } = buildContainerConfig(s);
    body.Entrypoint!.push('x');
    body.Cmd!.push('y');
    body.HostConfig.DeviceRequests![0]!.DeviceIDs.push('1');
    expect(s).toMatchObject({ command: ['a'], args: ['b'], gpuDeviceIds: ['0'] });
  });
});

describe('cpuSharesFromMillicores', () => {
  it('follows the kubelet conversion with a minimum of 2', () => {
    expect(cpuSharesFromMillicores(0)).toBe(2);
    expect(cpuSharesFromMillicores(1)).toBe(2);
    expect(cpuSharesFromMillicores(100)).toBe(102);
    expect(cpuSharesFromMillicores(1000)).toBe(1024);
    expect(cpuSharesFromMillicores(2500)).toBe(2560);
  });
});

describe('resolveContainerConfigOptions', () => {
  it('keeps defaults for undefined values', () => {
    expect(resolveContainerConfigOptions({ runAsUid: undefined, nofileLimit: 10 })).toMatchObject({ runAsUid: 1000, nofileLimit: 10 });
  });
});
