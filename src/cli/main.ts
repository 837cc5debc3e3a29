import { run } from './agentctl.js';

// First Ctrl-C cancels the running command cleanly (logs -f, wait); a second one kills.
const controller = new AbortController();
process.once('SIGINT', () => controller.abort());
// `agentctl get agents | head` closes stdout early; that is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  stdin: process.stdin,
  signal: controller.signal,
});
