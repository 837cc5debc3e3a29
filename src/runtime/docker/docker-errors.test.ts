import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../domain/errors.js';
import { DockerApiError, dockerErrorMessage, toRuntimeError } from './docker-errors.js';

const context = { operation: 'start', nodeId: 'n1', endpoint: 'unix:///var/run/docker.sock', containerId: 'c1' };

/** The shape docker-modem gives an error built from an HTTP answer. */
const modemError = (statusCode: number, message: string): Error =>
  Object.assign(new Error(`(HTTP code ${statusCode}) unexpected - ${message} `), { statusCode, json: { message } });

describe('toRuntimeError', () => {
  it('keeps the daemon message and status of an API error', () => {
    const error = toRuntimeError(modemError(500, 'OCI runtime create failed'), context, undefined, false);
    expect(error).toBeInstanceOf(DockerApiError);
    expect(error).toMatchObject({ code: 'RUNTIME_ERROR', statusCode: 500, dockerMessage: 'OCI runtime create failed' });
    expect(error.message).toContain('node n1');
  });

  it('maps transport failures to RUNTIME_UNAVAILABLE and deadlines to RUNTIME_TIMEOUT', () => {
    const refused = Object.assign(new Error('connect ENOENT /x.sock'), { code: 'ENOENT' });
    expect(toRuntimeError(refused, context, undefined, false)).toMatchObject({ code: 'RUNTIME_UNAVAILABLE' });
    expect(toRuntimeError(refused, context, undefined, false)).toBeInstanceOf(UnavailableError);
    expect(toRuntimeError(new Error('aborted'), context, undefined, true)).toMatchObject({ code: 'RUNTIME_TIMEOUT' });
  });

  it("returns the caller's abort reason when the caller aborted", () => {
    const controller = new AbortController();
    const reason = new Error('shutting down');
    controller.abort(reason);
    expect(toRuntimeError(new Error('x'), context, controller.signal, true)).toBe(reason);
  });
});

describe('dockerErrorMessage', () => {
  it('reads the JSON message, a text body, or the error message', () => {
    expect(dockerErrorMessage(modemError(404, 'No such image: x'))).toBe('No such image: x');
    expect(dockerErrorMessage(Object.assign(new Error('m'), { json: Buffer.from('page not found\n') }))).toBe('page not found');
    expect(dockerErrorMessage(new Error(' plain '))).toBe('plain');
  });
});
