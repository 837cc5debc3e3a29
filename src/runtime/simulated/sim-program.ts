import { InputError } from '../../domain/errors.js';

/** One line a simulated run writes, by its offset from the start of the run. */
export interface SimLine {
  atMs: number;
  stream: 'stdout' | 'stderr';
  text: string;
}

/**
 * What one run of a simulated container does, decided once at create from the
 * container's command and its SIM_* environment variables. Shared between containers
 * with the same command, so it is immutable.
 */
export interface SimProgram {
  /** Output, sorted by atMs. */
  readonly lines: readonly SimLine[];
  /** When a run ends by itself, in ms after its start; Infinity: it runs until stopped. */
  readonly runMs: number;
  readonly exitCode: number;
  /**
   * The command was not a script the simulator understands (say `python3 agent.py`):
   * the logs then say "simulated agent started" and "exited with code N", so a reader
   * sees that nothing real ran.
   */
  readonly opaque: boolean;
  /** SIM_FAIL_RATE: overrides the cluster's failure rate for this container. */
  readonly failureRate?: number | undefined;
  /** SIM_OOM_AFTER_MS: the run is OOM-killed (exit 137, oomKilled) this long after start. */
  readonly oomAfterMs?: number | undefined;
  /** SIM_IGNORE_SIGTERM: stop waits the whole grace period, then kills (exit 137). */
  readonly ignoresSigterm: boolean;
}

/** Log text of opaque programs. */
export const SIM_STARTED_TEXT = 'simulated agent started';
export const simExitedText = (exitCode: number): string => `exited with code ${exitCode}`;

/**
 * Environment variables a container spec can set to steer its simulated run; they
 * win over what the command says.
 * - SIM_RUN_MS: the run ends this many ms after start ("Infinity" = until stopped);
 *   output the script would write later is cut.
 * - SIM_EXIT_CODE: the exit code of a run that ends by itself (0..255).
 * - SIM_FAIL_RATE: 0..1, replaces the cluster's failureRate for this container.
 * - SIM_OOM_AFTER_MS: the run is OOM-killed this long after start.
 * - SIM_IGNORE_SIGTERM: "true"/"1": stop() has to wait out the grace period.
 */
export const SIM_ENV = {
  runMs: 'SIM_RUN_MS',
  exitCode: 'SIM_EXIT_CODE',
  failureRate: 'SIM_FAIL_RATE',
  oomAfterMs: 'SIM_OOM_AFTER_MS',
  ignoreSigterm: 'SIM_IGNORE_SIGTERM',
} as const;

const SHELLS: ReadonlySet<string> = new Set(['sh', 'ash', 'bash', 'dash', 'busybox sh']);
const basename = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

type Part = string | { readonly variable: string; readonly fallback?: string | undefined };
interface Word {
  parts: Part[];
  /** Holds command substitution or another construct the simulator does not run. */
  unsupported: boolean;
}
interface Redirect {
  fd: number;
  /** "&1", "&2" or a path. */
  target: string;
}
interface Command {
  words: Word[];
  redirects: Redirect[];
  /** How it joins the previous command. */
  connector: ';' | '&&' | '||';
  background: boolean;
  /** Pipelines, subshells, input redirection: run as an unknown command. */
  unsupported: boolean;
}

/** Splits a shell script into commands. Never throws: what it cannot read becomes "unsupported". */
function parseScript(script: string): Command[] {
  const commands: Command[] = [];
  let current: Command = { words: [], redirects: [], connector: ';', background: false, unsupported: false };
  let word: Word | undefined;
  let i = 0;
  const literal = (text: string): void => {
    word ??= { parts: [], unsupported: false };
    word.parts.push(text);
  };
  const endWord = (): void => {
    if (word !== undefined) current.words.push(word);
    word = undefined;
  };
  const endCommand = (connector: Command['connector'], background = false): void => {
    endWord();
    current.background = background;
    if (current.words.length > 0 || current.redirects.length > 0 || current.unsupported) commands.push(current);
    current = { words: [], redirects: [], connector, background: false, unsupported: false };
  };
  /** Reads $NAME, ${NAME}, ${NAME:-x}, $? at script[i] (the "$"). */
  const dollar = (): void => {
    word ??= { parts: [], unsupported: false };
    const next = script[i + 1];
    if (next === '(') {
      word.unsupported = true;
      i += 2;
      return;
    }
    if (next === '{') {
      const close = script.indexOf('}', i + 2);
      if (close < 0) {
        word.unsupported = true;
        i = script.length;
        return;
      }
      const body = script.slice(i + 2, close);
      const m = /^([A-Za-z_][A-Za-z0-9_]*|\?)(?::-(.*))?$/.exec(body);
      if (m) word.parts.push({ variable: m[1]!, fallback: m[2] });
      else word.unsupported = true;
      i = close + 1;
      return;
    }
    const m = /^([A-Za-z_][A-Za-z0-9_]*|[?#$!@*0-9-])/.exec(script.slice(i + 1));
    if (m) {
      word.parts.push({ variable: m[1]! });
      i += 1 + m[1]!.length;
      return;
    }
    word.parts.push('$');
    i += 1;
  };

  while (i < script.length) {
    const ch = script[i]!;
    if (ch === ' ' || ch === '\t') {
      endWord();
      i++;
    } else if (ch === '\n' || ch === ';') {
      endCommand(';');
      i++;
    } else if (ch === '&') {
      if (script[i + 1] === '&') {
        endCommand('&&');
        i += 2;
      } else {
        endCommand(';', true);
        i++;
      }
    } else if (ch === '|') {
      if (script[i + 1] === '|') {
        endCommand('||');
        i += 2;
      } else {
        current.unsupported = true;
        endWord();
        i++;
      }
    } else if (ch === '(' || ch === ')' || ch === '<' || ch === '`') {
      current.unsupported = true;
      endWord();
      i++;
    } else if (ch === '>') {
      // An all-digit word right before ">" is its file descriptor ("2>&1").
      let fd = 1;
      if (word !== undefined && word.parts.length === 1 && typeof word.parts[0] === 'string' && /^\d$/.test(word.parts[0])) {
        fd = Number(word.parts[0]);
        word = undefined;
      }
      endWord();
      i++;
      if (script[i] === '>') i++;
      while (script[i] === ' ') i++;
      let target = '';
      if (script[i] === '&') {
        target = '&';
        i++;
        while (/\d/.test(script[i] ?? '')) target += script[i++];
      } else {
        while (i < script.length && !/[\s;&|<>()]/.test(script[i]!)) target += script[i++];
      }
      current.redirects.push({ fd, target });
    } else if (ch === '#' && word === undefined) {
      while (i < script.length && script[i] !== '\n') i++;
    } else if (ch === "'") {
      const close = script.indexOf("'", i + 1);
      const end = close < 0 ? script.length : close;
      literal(script.slice(i + 1, end));
      i = end + 1;
    } else if (ch === '"') {
      word ??= { parts: [], unsupported: false };
      i++;
      while (i < script.length && script[i] !== '"') {
        const c = script[i]!;
        if (c === '\\' && /["\\$`\n]/.test(script[i + 1] ?? '')) {
          literal(script[i + 1]!);
          i += 2;
        } else if (c === '$') {
          dollar();
        } else if (c === '`') {
          word.unsupported = true;
          i++;
        } else {
          literal(c);
          i++;
        }
      }
      i++;
    } else if (ch === '\\') {
      if (script[i + 1] !== '\n') literal(script[i + 1] ?? '');
      i += 2;
    } else if (ch === '$') {
      dollar();
    } else {
      literal(ch);
      i++;
    }
  }
  endCommand(';');
  return commands;
}

/** Seconds in busybox `sleep` syntax ("1.5", "2m", "infinity"), in ms; undefined if invalid. */
export function parseSleepMs(arg: string): number | undefined {
  if (arg === 'infinity' || arg === 'inf') return Infinity;
  const m = /^(\d+(?:\.\d*)?|\.\d+)([smhd]?)$/.exec(arg);
  if (!m) return undefined;
  const unit = { '': 1_000, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Math.round(Number(m[1]) * unit);
}

/** `echo -e` escapes busybox understands; \c ends the output. */
function echoEscapes(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '\\' || i + 1 >= text.length) {
      out += c;
      continue;
    }
    const n = text[++i]!;
    if (n === 'c') return out;
    out += n === 'n' ? '\n' : n === 't' ? '\t' : n === '\\' ? '\\' : n === 'r' ? '' : `\\${n}`;
  }
  return out;
}

interface RunState {
  t: number;
  status: number;
  lines: SimLine[];
  vars: Map<string, string>;
  errexit: boolean;
  exited: boolean;
}

/** Runs one command against the simulated shell state. */
function runCommand(state: RunState, argv: string[], redirects: Redirect[], defaultRunMs: number): void {
  let stdout: SimLine['stream'] | undefined = 'stdout';
  let stderr: SimLine['stream'] | undefined = 'stderr';
  for (const r of redirects) {
    const to = r.target === '&2' ? 'stderr' : r.target === '&1' ? 'stdout' : undefined;
    if (r.fd === 1) stdout = to === 'stderr' ? stderr : to === 'stdout' ? stdout : undefined;
    else if (r.fd === 2) stderr = to === 'stdout' ? stdout : to === 'stderr' ? stderr : undefined;
  }
  const write = (stream: SimLine['stream'] | undefined, text: string): void => {
    if (stream === undefined) return;
    for (const line of text.split('\n')) state.lines.push({ atMs: state.t, stream, text: line });
  };
  const name = argv[0]!;
  const args = argv.slice(1);
  switch (name) {
    case 'echo': {
      let escapes = false;
      while (args[0] !== undefined && /^-[neE]+$/.test(args[0])) escapes = args.shift()!.includes('e');
      let text = args.join(' ');
      if (escapes) text = echoEscapes(text);
      if (escapes && text.endsWith('\n')) text = text.slice(0, -1);
      write(stdout, text);
      state.status = 0;
      return;
    }
    case 'sleep': {
      let total = 0;
      for (const arg of args) {
        const ms = parseSleepMs(arg);
        if (ms === undefined) {
          write(stderr, `sleep: invalid number '${arg}'`);
          state.status = 1;
          return;
        }
        total += ms;
      }
      if (args.length === 0) {
        write(stderr, 'sleep: missing operand');
        state.status = 1;
        return;
      }
      state.t += total;
      state.status = 0;
      return;
    }
    case 'exit': {
      const code = args[0] === undefined ? state.status : Number.parseInt(args[0], 10);
      state.status = Number.isNaN(code) ? 2 : ((code % 256) + 256) % 256;
      state.exited = true;
      return;
    }
    case 'true':
    case ':':
    case 'wait':
      state.status = 0;
      return;
    case 'false':
      state.status = 1;
      return;
    case 'set':
      for (const arg of args) if (/^-[a-z]*e/.test(arg)) state.errexit = true;
      state.status = 0;
      return;
    default:
      // Anything else stands for "the agent doing its work": it takes the node's default run time.
      state.t += defaultRunMs;
      state.status = 0;
  }
}

function expand(word: Word, vars: Map<string, string>, status: number): string {
  let out = '';
  for (const part of word.parts) {
    if (typeof part === 'string') out += part;
    else if (part.variable === '?') out += String(status);
    else {
      const value = vars.get(part.variable);
      out += value === undefined || value === '' ? (part.fallback ?? '') : value;
    }
  }
  return out;
}

function runScript(script: string, env: Record<string, string>, defaultRunMs: number): { lines: SimLine[]; runMs: number; exitCode: number } {
  const state: RunState = { t: 0, status: 0, lines: [], vars: new Map(Object.entries(env)), errexit: false, exited: false };
  for (const command of parseScript(script)) {
    if (command.connector === '&&' && state.status !== 0) continue;
    if (command.connector === '||' && state.status === 0) continue;
    const startT = state.t;
    const unsupported = command.unsupported || command.words.some((w) => w.unsupported);
    const words = unsupported ? [] : command.words.map((w) => expand(w, state.vars, state.status));
    // Leading NAME=value words are assignments.
    while (words[0] !== undefined && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0])) {
      const assignment = words.shift()!;
      const eq = assignment.indexOf('=');
      state.vars.set(assignment.slice(0, eq), assignment.slice(eq + 1));
      state.status = 0;
    }
    const exec = words[0] === 'exec';
    if (exec) words.shift();
    if (unsupported) runCommand(state, ['<unsupported>'], [], defaultRunMs);
    else if (words.length > 0) runCommand(state, words, command.redirects, defaultRunMs);
    if (command.background) {
      // A background job does not hold up the script.
      state.t = startT;
      state.status = 0;
    }
    if (exec || (state.errexit && state.status !== 0)) state.exited = true;
    if (state.exited || state.t === Infinity) break;
  }
  return { lines: state.lines, runMs: state.t, exitCode: state.status };
}

function envNumber(env: Record<string, string>, key: string, check: (n: number) => boolean, expected: string): number | undefined {
  const raw = env[key];
  if (raw === undefined) return undefined;
  const value = /^(infinity|inf)$/i.test(raw.trim()) ? Infinity : Number(raw);
  if (raw.trim() === '' || Number.isNaN(value) || !check(value)) {
    throw new InputError(`${key} must be ${expected}, got "${raw}"`, { [key]: raw }, 'SIMULATION_ENV_INVALID');
  }
  return value;
}

/** The SIM_* variables of an env, in a stable string: part of the program cache key. */
export function simEnvKey(env: Record<string, string>): string {
  let key = '';
  for (const name of Object.values(SIM_ENV)) if (env[name] !== undefined) key += `${name}=${env[name]}\u0000`;
  return key;
}

/**
 * Decides what a container does when it runs, from `[...command, ...args]` and its env.
 *
 * `sh -c SCRIPT` (also bash/ash/dash) runs a small subset of shell: commands separated
 * by `;`, newlines, `&&`, `||` and `&` (background: takes no time); `echo` (-n, -e),
 * `sleep` (busybox units, `infinity`), `exit`, `true`, `false`, `:`, `wait`, `set -e`,
 * `exec`, NAME=value assignments, `$VAR`, `${VAR}`, `${VAR:-default}` and `$?` from
 * the spec's env, quoting, `>&2`, `2>&1`, `>/dev/null`, `# comments`. Any other
 * command, a pipeline, a subshell or a command substitution stands for the agent's
 * work: it takes `defaultRunMs` (Infinity: the script never gets past it) and
 * succeeds. An argv that starts with echo/sleep/true/false runs that one command
 * without a shell. Any other argv (or an empty one: the image's entrypoint) is opaque:
 * it runs `defaultRunMs` and exits 0. SIM_* variables (see SIM_ENV) then override.
 *
 * @throws InputError (code SIMULATION_ENV_INVALID) for a malformed SIM_* value.
 */
export function compileSimProgram(argv: readonly string[], env: Record<string, string>, defaultRunMs: number): SimProgram {
  const runOverride = envNumber(env, SIM_ENV.runMs, (n) => n >= 0, 'a duration in ms >= 0 or "Infinity"');
  const exitOverride = envNumber(env, SIM_ENV.exitCode, (n) => Number.isInteger(n) && n >= 0 && n <= 255, 'an integer 0..255');
  const failureRate = envNumber(env, SIM_ENV.failureRate, (n) => n >= 0 && n <= 1, 'a number from 0 to 1');
  const oomAfterMs = envNumber(env, SIM_ENV.oomAfterMs, (n) => n >= 0 && Number.isFinite(n), 'a duration in ms >= 0');
  const sigterm = env[SIM_ENV.ignoreSigterm];
  const ignoresSigterm = sigterm !== undefined && /^(1|true|yes)$/i.test(sigterm.trim());

  const first = argv[0] === undefined ? undefined : basename(argv[0]);
  let result: { lines: SimLine[]; runMs: number; exitCode: number };
  let opaque = false;
  if (first !== undefined && SHELLS.has(first) && argv[1] === '-c' && argv[2] !== undefined) {
    result = runScript(argv[2], env, defaultRunMs);
  } else if (first !== undefined && ['echo', 'sleep', 'true', 'false'].includes(first)) {
    // Exec form: no shell, so no parsing or expansion of the words.
    const state: RunState = { t: 0, status: 0, lines: [], vars: new Map(), errexit: false, exited: false };
    runCommand(state, [first, ...argv.slice(1)], [], defaultRunMs);
    result = { lines: state.lines, runMs: state.t, exitCode: state.status };
  } else {
    opaque = true;
    result = { lines: [{ atMs: 0, stream: 'stdout', text: SIM_STARTED_TEXT }], runMs: defaultRunMs, exitCode: 0 };
  }

  let { lines, runMs } = result;
  if (runOverride !== undefined) {
    runMs = runOverride;
    lines = lines.filter((l) => l.atMs <= runMs);
  }
  return {
    lines,
    runMs,
    exitCode: exitOverride ?? result.exitCode,
    opaque,
    failureRate,
    oomAfterMs,
    ignoresSigterm,
  };
}
