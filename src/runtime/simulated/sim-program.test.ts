import { describe, expect, it } from 'vitest';
import { InputError } from '../../domain/errors.js';
import { SIM_STARTED_TEXT, compileSimProgram, parseSleepMs } from './sim-program.js';

const sh = (script: string, env: Record<string, string> = {}, defaultRunMs = Infinity) => compileSimProgram(['sh', '-c', script], env, defaultRunMs);
const texts = (script: string, env: Record<string, string> = {}) => sh(script, env).lines.map((l) => `${l.stream}:${l.atMs}:${l.text}`);

describe('compileSimProgram', () => {
  it('runs echo, sleep and exit with times and streams', () => {
    const p = sh('echo out1; echo err1 >&2; echo out2; sleep 1.2; echo late');
    expect(p.lines).toEqual([
      { atMs: 0, stream: 'stdout', text: 'out1' },
      { atMs: 0, stream: 'stderr', text: 'err1' },
      { atMs: 0, stream: 'stdout', text: 'out2' },
      { atMs: 1_200, stream: 'stdout', text: 'late' },
    ]);
    expect(p).toMatchObject({ runMs: 1_200, exitCode: 0, opaque: false, ignoresSigterm: false });
    expect(sh('echo run; exit 4')).toMatchObject({ runMs: 0, exitCode: 4 });
    expect(sh('exit 3; echo never').lines).toEqual([]);
    expect(sh('sleep 60')).toMatchObject({ runMs: 60_000, exitCode: 0 });
  });

  it('follows && , || , set -e and $? like sh', () => {
    expect(sh('false && echo no || echo yes').lines.map((l) => l.text)).toEqual(['yes']);
    expect(sh('true && echo a; false').exitCode).toBe(1);
    expect(sh('false; echo "status=$?"').lines[0]!.text).toBe('status=1');
    expect(sh('set -e; echo a; false; echo b')).toMatchObject({ exitCode: 1, lines: [expect.objectContaining({ text: 'a' })] });
    expect(sh('false; exit').exitCode).toBe(1);
    expect(sh('exit 300').exitCode).toBe(44);
  });

  it('expands variables from the env and assignments, and honours quoting', () => {
    expect(texts('echo "hi $NAME" \'$NAME\' ${MISSING:-dflt}; X=7; echo x$X', { NAME: 'bob' })).toEqual([
      'stdout:0:hi bob $NAME dflt',
      'stdout:0:x7',
    ]);
    expect(texts('echo a \\; b # comment; echo hidden')).toEqual(['stdout:0:a ; b']);
    expect(texts('echo -e "one\\ntwo"; echo -n three')).toEqual(['stdout:0:one', 'stdout:0:two', 'stdout:0:three']);
    expect(texts('echo quiet >/dev/null; echo loud 2>&1; echo e 1>&2')).toEqual(['stdout:0:loud', 'stderr:0:e']);
  });

  it('takes the default run time for commands it does not know, and stops at an infinite one', () => {
    expect(sh('echo a; python3 agent.py; echo b', {}, 500)).toMatchObject({ runMs: 500, exitCode: 0 });
    expect(sh('echo a; python3 agent.py; echo b', {}, 500).lines.map((l) => l.atMs)).toEqual([0, 500]);
    const forever = sh('echo a; head -c 1m /dev/zero | wc -c; echo b');
    expect(forever.runMs).toBe(Infinity);
    expect(forever.lines.map((l) => l.text)).toEqual(['a']);
    expect(sh('x=$(date); echo b', {}, 100)).toMatchObject({ runMs: 100 });
    expect(sh('sleep 5 & echo now; wait').lines).toEqual([{ atMs: 0, stream: 'stdout', text: 'now' }]);
    expect(sh('sleep infinity').runMs).toBe(Infinity);
    expect(sh('exec sleep 2; echo never')).toMatchObject({ runMs: 2_000, lines: [] });
  });

  it('runs exec-form echo/sleep without a shell, and treats other commands as opaque', () => {
    expect(compileSimProgram(['sleep', '3'], {}, Infinity)).toMatchObject({ runMs: 3_000, exitCode: 0, opaque: false });
    expect(compileSimProgram(['/bin/echo', '$HOME'], { HOME: '/x' }, Infinity).lines[0]!.text).toBe('$HOME');
    const opaque = compileSimProgram(['python3', '-m', 'agent'], {}, 2_000);
    expect(opaque).toMatchObject({ runMs: 2_000, exitCode: 0, opaque: true });
    expect(opaque.lines.map((l) => l.text)).toEqual([SIM_STARTED_TEXT]);
    expect(compileSimProgram([], {}, Infinity)).toMatchObject({ opaque: true, runMs: Infinity });
  });

  it('lets SIM_* env override the script', () => {
    const p = sh('echo a; sleep 10; echo b', { SIM_RUN_MS: '5000', SIM_EXIT_CODE: '9', SIM_FAIL_RATE: '0.5', SIM_OOM_AFTER_MS: '100', SIM_IGNORE_SIGTERM: 'true' });
    expect(p).toMatchObject({ runMs: 5_000, exitCode: 9, failureRate: 0.5, oomAfterMs: 100, ignoresSigterm: true });
    expect(p.lines.map((l) => l.text)).toEqual(['a']);
    expect(compileSimProgram(['agent'], { SIM_RUN_MS: 'Infinity' }, 10).runMs).toBe(Infinity);
  });

  it('rejects malformed SIM_* values with an InputError naming the variable', () => {
    const bad: Record<string, string>[] = [{ SIM_RUN_MS: 'soon' }, { SIM_EXIT_CODE: '256' }, { SIM_FAIL_RATE: '1.5' }, { SIM_OOM_AFTER_MS: '-1' }];
    for (const env of bad) {
      const error = (() => {
        try {
          sh('true', env);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).code).toBe('SIMULATION_ENV_INVALID');
      expect((error as InputError).message).toContain(Object.keys(env)[0]);
    }
  });
});

describe('parseSleepMs', () => {
  it('reads busybox sleep arguments', () => {
    expect(parseSleepMs('2')).toBe(2_000);
    expect(parseSleepMs('1.5')).toBe(1_500);
    expect(parseSleepMs('.25')).toBe(250);
    expect(parseSleepMs('2m')).toBe(120_000);
    expect(parseSleepMs('1h')).toBe(3_600_000);
    expect(parseSleepMs('infinity')).toBe(Infinity);
    expect(parseSleepMs('soon')).toBeUndefined();
    expect(parseSleepMs('-1')).toBeUndefined();
  });
});
