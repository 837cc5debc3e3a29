import { describe, expect, it } from 'vitest';
import { InputError } from '../../domain/errors.js';
import { formatDockerEndpoint, parseDockerHost } from './docker-host.js';

describe('parseDockerHost', () => {
  it('defaults to the standard socket', () => {
    expect(parseDockerHost(undefined)).toEqual({ kind: 'unix', socketPath: '/var/run/docker.sock' });
    expect(parseDockerHost('  ')).toEqual({ kind: 'unix', socketPath: '/var/run/docker.sock' });
  });

  it('parses unix sockets', () => {
    expect(parseDockerHost('unix:///run/node-2/docker.sock')).toEqual({ kind: 'unix', socketPath: '/run/node-2/docker.sock' });
    expect(parseDockerHost('/tmp/d.sock')).toEqual({ kind: 'unix', socketPath: '/tmp/d.sock' });
  });

  it('parses tcp and http addresses', () => {
    expect(parseDockerHost('tcp://10.0.0.5:2375')).toEqual({ kind: 'tcp', host: '10.0.0.5', port: 2375, protocol: 'http' });
    expect(parseDockerHost('http://docker-2:2375/')).toEqual({ kind: 'tcp', host: 'docker-2', port: 2375, protocol: 'http' });
    expect(parseDockerHost('tcp://[::1]:2375')).toEqual({ kind: 'tcp', host: '::1', port: 2375, protocol: 'http' });
  });

  it('fails loudly, naming the value, for what it cannot use', () => {
    for (const bad of ['unix://relative.sock', 'tcp://host', 'tcp://host:0', 'tcp://host:70000', 'https://host:2376', 'ssh://me@host', 'npipe:////./pipe/x']) {
      expect(() => parseDockerHost(bad)).toThrow(InputError);
      expect(() => parseDockerHost(bad)).toThrow(bad);
    }
  });
});

describe('formatDockerEndpoint', () => {
  it('prints both kinds', () => {
    expect(formatDockerEndpoint(parseDockerHost('unix:///x.sock'))).toBe('unix:///x.sock');
    expect(formatDockerEndpoint(parseDockerHost('tcp://h:1'))).toBe('tcp://h:1');
  });
});
