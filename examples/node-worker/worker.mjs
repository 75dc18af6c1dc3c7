#!/usr/bin/env node
// worker.mjs — a complete tasker worker in Node.js, speaking only the SQL worker protocol
// (docs/worker-protocol.md): LISTEN pgmq_message_ready + a poll timer, batched claims, handlers,
// heartbeats, batched hand-backs and a graceful drain on SIGTERM. Its handlers have the names and
// behaviour of tasker-worker's (noop, echo, sleep, fail, exec), so the same templates run on
// either; add your own to `handlers` below.
//
//   DATABASE_URL=postgresql://… node worker.mjs --namespace demo [options]
//
// Options (or the environment variable in brackets):
//   --namespace NS        the namespace to work for (required)            [TASKER_NAMESPACE]
//   --worker-id ID        recorded with claims and results                [TASKER_WORKER_ID]
//   --concurrency N       handlers running at once (default 10)           [TASKER_CONCURRENCY]
//   --batch N             most steps per claim (default 10)               [TASKER_BATCH]
//   --lease-secs S        lease per claim and heartbeat (default 30)      [TASKER_LEASE_SECS]
//   --poll-ms MS          claim at least this often (default 500)         [TASKER_POLL_MS]
//   --drain-secs S        SIGTERM: how long running handlers may finish (default 60)
//   --no-listen           poll only: for PgBouncer in transaction pooling mode (no LISTEN there)
//   --verbose             also log every claim and success
// Exit status: 0 after a clean drain, 1 after a forced exit or a failed start, 2 bad usage.

import { spawn } from 'node:child_process';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';

// ---- configuration ------------------------------------------------------------------------------

function usage(message) {
  process.stderr.write(`worker.mjs: ${message}\nusage: node worker.mjs --namespace NS [--worker-id ID] ` +
    '[--concurrency N] [--batch N] [--lease-secs S] [--poll-ms MS] [--drain-secs S] [--no-listen] [--verbose]\n');
  process.exit(2);
}

function intOption(value, name, min, max, fallback) {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) usage(`${name} must be an integer in ${min}..${max}`);
  return n;
}

let args;
try {
  args = parseArgs({
    options: {
      namespace: { type: 'string' }, 'worker-id': { type: 'string' }, concurrency: { type: 'string' },
      batch: { type: 'string' }, 'lease-secs': { type: 'string' }, 'poll-ms': { type: 'string' },
      'drain-secs': { type: 'string' }, 'no-listen': { type: 'boolean' }, verbose: { type: 'boolean' },
    },
  }).values;
} catch (err) {
  usage(err.message);
}
const env = process.env;
const config = {
  databaseUrl: env.DATABASE_URL,
  namespace: args.namespace ?? env.TASKER_NAMESPACE,
  workerId: args['worker-id'] ?? env.TASKER_WORKER_ID ?? `node-${os.hostname()}-${process.pid}`,
  concurrency: intOption(args.concurrency ?? env.TASKER_CONCURRENCY, '--concurrency', 1, 1000, 10),
  batch: intOption(args.batch ?? env.TASKER_BATCH, '--batch', 1, 1000, 10),
  leaseSecs: intOption(args['lease-secs'] ?? env.TASKER_LEASE_SECS, '--lease-secs', 1, 86400, 30),
  pollMs: intOption(args['poll-ms'] ?? env.TASKER_POLL_MS, '--poll-ms', 10, 3600000, 500),
  drainSecs: intOption(args['drain-secs'], '--drain-secs', 1, 86400, 60),
  listen: !args['no-listen'],
  verbose: Boolean(args.verbose),
};
if (!config.databaseUrl) usage('set DATABASE_URL');
if (!/^[a-z][a-z0-9_]{0,28}$/.test(config.namespace ?? '')) usage('--namespace must match ^[a-z][a-z0-9_]{0,28}$');
const dispatchQueue = `tasker_dispatch_${config.namespace}`;

// ---- logging: one line per event on stderr ------------------------------------------------------

function log(level, message, fields = {}) {
  if (level === 'debug' && !config.verbose) return;
  const extra = Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} node-worker: ${message}${extra.join('')}\n`);
}
const stepFields = (job) => ({ task: job.row.task_uuid, step: job.row.workflow_step_uuid,
  name: job.row.step_name, attempt: job.row.attempt });

// ---- handlers -----------------------------------------------------------------------------------
// A handler gets the claimed row (docs/worker-protocol.md lists its columns) and an AbortSignal
// that fires when the lease is lost, the step times out or the drain limit passes. It returns the
// step's result (any JSON value) or throws. Throw a StepError to control retrying.

class StepError extends Error {
  constructor(message, { retryable = true, retryAfterSecs, details } = {}) {
    super(message);
    this.retryable = retryable;
    this.retryAfterSecs = retryAfterSecs;
    this.details = details;
  }
}

const handlers = {
  // Succeeds at once.
  noop: async () => ({}),

  // Returns what the step was given, so a template can show data flowing between steps.
  echo: async (row) => ({ context: row.task_context, initialization: row.handler_initialization ?? {},
    dependencies: row.dependency_results ?? {}, attempt: row.attempt }),

  // Waits `ms` (default 100) without holding the CPU.
  sleep: async (row, signal) => {
    const ms = row.handler_initialization?.ms ?? 100;
    if (!Number.isInteger(ms) || ms < 0) throw new StepError(`sleep: invalid ms ${JSON.stringify(ms)}`, { retryable: false });
    await sleep(ms, undefined, { signal });
    return { slept_ms: ms };
  },

  // Fails as configured: message, retryable (default true), succeed_on_attempt, retry_after_secs.
  fail: async (row) => {
    const init = row.handler_initialization ?? {};
    if (Number.isInteger(init.succeed_on_attempt) && row.attempt >= init.succeed_on_attempt) {
      return { attempt: row.attempt, succeeded_on_attempt: init.succeed_on_attempt };
    }
    throw new StepError(init.message ?? `failed as configured (fail handler, attempt ${row.attempt})`, {
      retryable: init.retryable !== false, retryAfterSecs: init.retry_after_secs, details: { attempt: row.attempt } });
  },

  // Runs initialization.command (an argv array, no shell) with the step as JSON on stdin; exit 0
  // and one JSON value on stdout is the result; any other exit fails the step with the stderr tail.
  exec: (row, signal) => new Promise((resolve, reject) => {
    const command = row.handler_initialization?.command;
    if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string')) {
      reject(new StepError('exec: initialization.command must be a non-empty array of strings', { retryable: false }));
      return;
    }
    const child = spawn(command[0], command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], signal,
      env: { ...process.env, TASKER_TASK_UUID: row.task_uuid, TASKER_STEP_UUID: row.workflow_step_uuid,
        TASKER_STEP_NAME: row.step_name, TASKER_ATTEMPT: String(row.attempt), TASKER_NAMESPACE: row.namespace,
        TASKER_WORKER_ID: config.workerId } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-65536); });
    child.stdin.on('error', () => {}); // a command that does not read stdin is fine
    child.stdin.end(`${JSON.stringify({ task_uuid: row.task_uuid, step_uuid: row.workflow_step_uuid,
      step_name: row.step_name, attempt: row.attempt, namespace: row.namespace, task_name: row.task_name,
      correlation_id: row.correlation_id, context: row.task_context, initialization: row.handler_initialization,
      inputs: row.inputs, dependencies: row.dependency_results })}\n`);
    child.on('error', (err) => reject(new StepError(`cannot run ${command[0]}: ${err.message}`)));
    child.on('close', (code, sig) => {
      const tail = stderr.trim().split('\n').slice(-5).join('\n');
      if (code === 0) {
        try { resolve(JSON.parse(stdout)); } catch (err) {
          reject(new StepError(`stdout is not valid JSON: ${stdout.trim() ? err.message : 'no output'}`));
        }
        return;
      }
      let refine = {};
      try { const v = JSON.parse(stdout); if (v && typeof v === 'object' && !Array.isArray(v)) refine = v; } catch { /* none */ }
      const message = refine.message ?? (sig ? `killed by signal ${sig}` : `exited with status ${code}: ${tail}`);
      reject(new StepError(message, { retryable: refine.retryable !== false, retryAfterSecs: refine.retry_after_secs,
        details: { ...refine, exit_code: code, stderr_tail: tail } }));
    });
  }),
};

// ---- state --------------------------------------------------------------------------------------

const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 3, application_name: 'tasker-node-worker' });
// An idle pooled connection that breaks emits here; the next query reconnects.
pool.on('error', (err) => log('warn', 'idle database connection lost', { error: err.message }));

const running = new Map();    // step uuid → job { row, controller, lastLeaseAt, lost, done }
let pending = [];             // results waiting for a hand-back (submit_step_results entries)
let claiming = false;         // a claim call is in flight
let claimWanted = false;      // claim again as soon as possible
let flushing = false;         // a hand-back call is in flight
let flushTimer = null;
let heartbeating = false;
let stopping = false;
let listenClient = null;
let unknownNamespaceLogged = false;

// ---- claim --------------------------------------------------------------------------------------

// claim: take up to min(batch, free slots) steps. Called on a notification for our queue, on every
// poll tick, after (re)connecting the LISTEN, and again at once after a claim that came back full.
async function claim() {
  if (stopping) return;
  const free = config.concurrency - running.size;
  if (claiming || free <= 0) { claimWanted = true; return; }
  claiming = true;
  claimWanted = false;
  const qty = Math.min(config.batch, free);
  try {
    const { rows } = await pool.query('SELECT * FROM tasker.tasker_claim_and_execute_step($1, $2, $3, $4)',
      [config.namespace, qty, config.leaseSecs, config.workerId]);
    unknownNamespaceLogged = false;
    for (const row of rows) start(row);
    if (rows.length === qty) claimWanted = true; // a full batch: there may be more
  } catch (err) {
    if (err.code === 'TK404' && !unknownNamespaceLogged) {
      log('warn', 'the namespace is not registered yet; polling until a template of it is', { namespace: config.namespace });
      unknownNamespaceLogged = true;
    } else if (err.code !== 'TK404') {
      log('warn', 'claim failed', { error: err.message, code: err.code });
    }
  } finally {
    claiming = false;
    if (claimWanted && !stopping && running.size < config.concurrency) setImmediate(claim);
  }
}

// ---- run a handler ------------------------------------------------------------------------------

function start(row) {
  const job = { row, controller: new AbortController(), lastLeaseAt: Date.now(), lost: false, done: false,
    startedAt: Date.now() };
  running.set(row.workflow_step_uuid, job);
  const handler = handlers[row.handler_callable];
  log('debug', 'claimed', { ...stepFields(job), handler: row.handler_callable });
  let timer = null;
  const timeoutSecs = row.timeout_seconds;
  const outcome = new Promise((resolve) => {
    if (Number.isInteger(timeoutSecs) && timeoutSecs > 0) {
      timer = setTimeout(() => {
        job.controller.abort(new Error('timeout'));
        resolve({ success: false, error: { message: `timed out after ${timeoutSecs} s`, timed_out: true, retryable: true } });
      }, timeoutSecs * 1000);
    }
    if (!handler) {
      resolve({ success: false, error: { message: `unknown handler callable "${row.handler_callable}": this worker runs ` +
        `${Object.keys(handlers).join(', ')}`, retryable: false } });
      return;
    }
    Promise.resolve()
      .then(() => handler(row, job.controller.signal))
      .then((result) => resolve({ success: true, result: result === undefined ? null : result }),
        (err) => resolve(failure(err, job)));
  });
  outcome.then((o) => { clearTimeout(timer); finish(job, o); });
}

// failure: a thrown error as the hand-back's error object.
function failure(err, job) {
  if (job.controller.signal.aborted && job.shutdownReason) {
    return { success: false, error: { message: job.shutdownReason, retryable: true } };
  }
  if (err instanceof StepError) {
    return { success: false, retryAfterSecs: err.retryAfterSecs,
      error: { ...(err.details ?? {}), message: err.message, retryable: err.retryable } };
  }
  return { success: false, error: { message: err?.message ?? String(err), retryable: true } };
}

// finish: queue the outcome for the next hand-back, unless the lease was lost meanwhile.
function finish(job, o) {
  if (job.done) return;
  job.done = true;
  running.delete(job.row.workflow_step_uuid);
  if (job.lost) {
    log('warn', 'lease lost; result not handed back', stepFields(job));
  } else {
    const entry = { step_uuid: job.row.workflow_step_uuid, attempt: job.row.attempt, success: o.success,
      worker_id: config.workerId, execution_ms: Date.now() - job.startedAt };
    if (o.success) entry.result = o.result;
    else entry.error = o.error;
    if (!o.success && Number.isInteger(o.retryAfterSecs)) entry.retry_after_secs = o.retryAfterSecs;
    log(o.success ? 'debug' : 'info', o.success ? 'succeeded' : 'failed',
      { ...stepFields(job), ...(o.success ? {} : { error: o.error.message }) });
    pending.push(entry);
    scheduleFlush();
  }
  if (!stopping) claim(); // a slot is free
}

// ---- hand back ----------------------------------------------------------------------------------

// Results that finish within 2 ms of each other go back in one submit_step_results call: one
// transaction however many steps (commits are the currency). One call is in flight at a time;
// what finishes meanwhile goes in the next one.
function scheduleFlush(delayMs = 2) {
  if (flushTimer || flushing) return;
  flushTimer = setTimeout(() => { flushTimer = null; flush(); }, delayMs);
}

const rejections = new Map(); // step uuid → how many times a non-transient error refused its batch

async function flush() {
  if (flushing || pending.length === 0) return;
  flushing = true;
  const batch = pending.splice(0, 500);
  let retryInMs = 0;
  try {
    const { rows } = await pool.query('SELECT * FROM tasker.submit_step_results($1::jsonb)', [JSON.stringify(batch)]);
    for (const r of rows) {
      rejections.delete(r.workflow_step_uuid);
      // accepted: recorded. duplicate: this attempt was already recorded (a retried hand-back
      // whose first try committed) — harmless. stale: the lease was lost (cancelled, resolved,
      // expired and re-dispatched). unknown_step / invalid: a bug in the worker.
      if (r.status === 'accepted') continue;
      const level = r.status === 'duplicate' ? 'info' : 'warn';
      log(level, `hand-back ${r.status}`, { step: r.workflow_step_uuid, attempt: r.attempt, state: r.state ?? 'none' });
    }
  } catch (err) {
    if (isTransient(err)) {
      // Nothing was committed, or everything was: sending the same batch again is safe, because
      // entries already recorded come back as `duplicate`.
      log('warn', 'hand-back failed; will retry', { error: err.message, code: err.code, results: batch.length });
      pending = batch.concat(pending);
      retryInMs = 500;
    } else {
      log('error', 'hand-back refused', { error: err.message, code: err.code, results: batch.length });
      const keep = batch.filter((e) => {
        const n = (rejections.get(e.step_uuid) ?? 0) + 1;
        rejections.set(e.step_uuid, n);
        if (n < 3) return true;
        log('error', 'dropping a result refused 3 times; its lease will expire and the sweep retries it',
          { step: e.step_uuid, attempt: e.attempt });
        rejections.delete(e.step_uuid);
        return false;
      });
      pending = keep.concat(pending);
      retryInMs = 1000;
    }
  } finally {
    flushing = false;
    if (pending.length > 0) scheduleFlush(retryInMs || 2);
  }
}

// isTransient: errors after which the same statement may well succeed (connection trouble,
// serialization failures, deadlocks, resource shortage, server shutdown).
function isTransient(err) {
  const code = err?.code ?? '';
  if (!code || /^E[A-Z]+$/.test(code)) return true; // no SQLSTATE: a network error (ECONNRESET, …)
  return code.startsWith('08') || code === '40001' || code === '40P01' || code.startsWith('53') ||
    code.startsWith('57P');
}

// ---- heartbeats ---------------------------------------------------------------------------------

// Every running step whose lease was extended a third of a lease ago or more is renewed in one
// statement. false for a step = its lease is lost: stop the handler and do not hand back.
async function heartbeat() {
  if (heartbeating) return;
  const due = [...running.values()].filter((j) => !j.lost && Date.now() - j.lastLeaseAt >= (config.leaseSecs * 1000) / 3);
  if (due.length === 0) return;
  heartbeating = true;
  const sentAt = Date.now();
  try {
    const { rows } = await pool.query(
      'SELECT x.step, tasker.heartbeat_step(x.step, x.attempt, $3) AS ok FROM unnest($1::uuid[], $2::int[]) AS x(step, attempt)',
      [due.map((j) => j.row.workflow_step_uuid), due.map((j) => j.row.attempt), config.leaseSecs]);
    for (const r of rows) {
      const job = running.get(r.step);
      if (!job) continue;
      if (r.ok) {
        job.lastLeaseAt = sentAt;
      } else {
        job.lost = true;
        job.controller.abort(new Error('lease lost'));
        log('warn', 'lease lost (the step was cancelled, resolved or expired); stopping its handler', stepFields(job));
      }
    }
  } catch (err) {
    log('warn', 'heartbeat failed', { error: err.message, code: err.code });
  } finally {
    heartbeating = false;
  }
}

// ---- LISTEN -------------------------------------------------------------------------------------

// listen: one dedicated connection LISTENing on pgmq_message_ready, reconnecting with capped,
// jittered backoff. A notification is a hint: the poll timer is the guarantee.
async function listen() {
  let backoffMs = 100;
  while (!stopping) {
    const client = new pg.Client({ connectionString: config.databaseUrl, application_name: 'tasker-node-worker-listen' });
    const closed = new Promise((resolve) => { client.once('error', resolve); client.once('end', resolve); });
    client.on('error', () => {}); // reported through `closed`
    try {
      await client.connect();
      client.on('notification', (n) => {
        try {
          if (JSON.parse(n.payload).queue === dispatchQueue) claim();
        } catch { /* not ours */ }
      });
      await client.query('LISTEN pgmq_message_ready');
      listenClient = client;
      backoffMs = 100;
      log('info', 'listening on pgmq_message_ready', { queue: dispatchQueue });
      claim(); // notifications sent while we were not listening are lost: look once
      const why = await closed;
      if (!stopping) log('warn', 'LISTEN connection lost; reconnecting', { error: why?.message ?? 'closed' });
    } catch (err) {
      if (!stopping) log('warn', 'LISTEN connection failed; retrying', { error: err.message, retry_ms: backoffMs });
    } finally {
      listenClient = null;
      client.end().catch(() => {});
    }
    if (stopping) break;
    await sleep(backoffMs * (0.75 + Math.random() / 2));
    backoffMs = Math.min(backoffMs * 2, 10000);
  }
}

// ---- drain --------------------------------------------------------------------------------------

let pollTimer = null;
let heartbeatTimer = null;

async function drain(signal) {
  if (stopping) {
    log('warn', `second ${signal}: exiting now; running steps' leases will expire`);
    process.exit(1);
  }
  stopping = true;
  log('info', `${signal}: draining`, { running: running.size, waiting_hand_back: pending.length });
  clearInterval(pollTimer);
  if (listenClient) listenClient.end().catch(() => {});

  // 1. Running handlers finish (heartbeats go on) until the drain limit; then they are stopped
  //    and handed back as retryable failures, so their steps retry at once instead of waiting
  //    for the lease to expire.
  const deadline = Date.now() + config.drainSecs * 1000;
  while (running.size > 0 && Date.now() < deadline) await sleep(20);
  for (const job of running.values()) {
    job.shutdownReason = `worker ${config.workerId} shut down: the handler did not finish within the ${config.drainSecs} s drain limit`;
    job.controller.abort(new Error('shutdown'));
    finish(job, { success: false, error: { message: job.shutdownReason, retryable: true } });
  }
  // 2. Hand back everything that waits, for up to 15 s more.
  const handBackDeadline = Date.now() + 15000;
  while ((pending.length > 0 || flushing) && Date.now() < handBackDeadline) {
    flush();
    await sleep(20);
  }
  clearInterval(heartbeatTimer);
  const lost = pending.length;
  await pool.end().catch(() => {});
  if (lost > 0) {
    log('error', 'could not hand back every result; their leases will expire', { results: lost });
    process.exit(1);
  }
  log('info', 'drained');
  process.exit(0);
}

// ---- main ---------------------------------------------------------------------------------------

process.on('SIGTERM', () => drain('SIGTERM'));
process.on('SIGINT', () => drain('SIGINT'));

log('info', 'starting', { namespace: config.namespace, worker_id: config.workerId, concurrency: config.concurrency,
  batch: config.batch, lease_secs: config.leaseSecs, poll_ms: config.pollMs, listen: config.listen });
pollTimer = setInterval(claim, config.pollMs);
heartbeatTimer = setInterval(heartbeat, Math.min(1000, Math.max(50, (config.leaseSecs * 1000) / 6)));
if (config.listen) listen();
claim();
