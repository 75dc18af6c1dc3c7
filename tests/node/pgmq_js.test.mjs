// pgmq_js.test.mjs — the npm client pgmq-js 1.3.1 (which we did not write) against our database.
//
// Usage: DATABASE_URL=postgresql://user@host:port/db node pgmq_js.test.mjs
// The database must be migrated (tests/db/30_pgmq_js.sh uses a fresh one). Prints TAP lines and
// exits non-zero if any check fails. pgmq-js sends its parameters untyped, reads results by column
// name and parses list_queues() from the composite's text form, so this catches drift in function
// overloads, parameter handling and result shapes that our own SQL tests could miss.
import assert from 'node:assert/strict';
import pg from 'pg';
import { Pgmq } from 'pgmq-js';

const url = process.env.DATABASE_URL;
if (!url) {
  console.error('pgmq_js.test.mjs: set DATABASE_URL');
  process.exit(2);
}
const u = new URL(url);
const conn = {
  host: u.hostname,
  port: Number(u.port || 5432),
  database: decodeURIComponent(u.pathname.replace(/^\//, '')),
  user: decodeURIComponent(u.username),
  password: decodeURIComponent(u.password),
};

let n = 0;
let failed = 0;
async function check(name, fn) {
  n += 1;
  try {
    await fn();
    console.log(`ok ${n} - ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`not ok ${n} - ${name}`);
    for (const line of String(err && err.stack ? err.stack : err).split('\n')) console.log(`#   ${line}`);
  }
}

const Q = 'pgmqjs_main';
const QU = 'pgmqjs_unlogged';
const QG = 'pgmqjs_gone';

// A plain pg client to look behind pgmq-js's back (tables, archive).
const db = new pg.Client({ ...conn, ssl: false });
await db.connect();
const one = async (sql, params = []) => (await db.query(sql, params)).rows;

// idleTimeoutMillis set: pgmq-js 1.3.1 otherwise sets the pool max to 1000 (a bug).
const pgmq = await Pgmq.new(
  { ...conn, ssl: false, max: 4, idleTimeoutMillis: 1000 },
  { skipExtensionCreation: true },
);

const near = (date, expectedMs, slackMs, what) => {
  assert.ok(date instanceof Date && !Number.isNaN(date.getTime()), `${what}: not a valid Date`);
  const d = Math.abs(date.getTime() - expectedMs);
  assert.ok(d <= slackMs, `${what}: ${date.toISOString()} is ${d} ms away from ${new Date(expectedMs).toISOString()}`);
};

try {
  // ---------------------------------------------------------------- queues
  await check('queue.create creates q_/a_ tables and a meta row', async () => {
    await pgmq.queue.create(Q);
    const rows = await one(
      `SELECT to_regclass('pgmq.q_' || $1::text) IS NOT NULL AS q, to_regclass('pgmq.a_' || $1::text) IS NOT NULL AS a,
              EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = $1::text) AS m`,
      [Q],
    );
    assert.deepEqual(rows[0], { q: true, a: true, m: true });
  });

  await check('queue.create again is not an error', async () => {
    await pgmq.queue.create(Q);
  });

  await check('queue.createUnlogged', async () => {
    await pgmq.queue.createUnlogged(QU);
    const rows = await one(`SELECT relpersistence FROM pg_class WHERE oid = to_regclass('pgmq.q_' || $1::text)`, [QU]);
    assert.equal(rows[0].relpersistence, 'u');
  });

  await check('queue.list parses our list_queues() composite', async () => {
    await pgmq.queue.create(QG);
    const list = await pgmq.queue.list();
    const byName = Object.fromEntries(list.map((q) => [q.name, q]));
    assert.equal(byName[Q]?.isPartitioned, false);
    assert.equal(byName[Q]?.isUnlogged, false);
    assert.equal(byName[QU]?.isUnlogged, true);
    assert.ok(byName[QG]);
    // createdAt: pgmq-js splits the composite text on commas and keeps the quotes of the
    // timestamp, so it is an Invalid Date against real PGMQ as well; not asserted.
  });

  // ---------------------------------------------------------------- sending
  let id1, idDelayed, batch;
  await check('msg.send returns the new msg_id as a number', async () => {
    id1 = await pgmq.msg.send(Q, { hello: 'world', n: 1 });
    assert.equal(typeof id1, 'number');
    assert.equal(id1, 1);
  });

  await check('msg.send with a delay stores vt = now + delay', async () => {
    const before = Date.now();
    idDelayed = await pgmq.msg.send(Q, { delayed: true }, 3600);
    assert.equal(idDelayed, 2);
    const rows = await one(`SELECT vt FROM pgmq.q_${Q} WHERE msg_id = $1`, [idDelayed]);
    near(rows[0].vt, before + 3600 * 1000, 5000, 'delayed vt');
  });

  await check('msg.sendBatch returns ids in array order', async () => {
    batch = await pgmq.msg.sendBatch(Q, [{ b: 1 }, { b: 2 }, { b: 3 }, { b: 4 }, { b: 5 }]);
    assert.deepEqual(batch, [3, 4, 5, 6, 7]);
    const rows = await one(`SELECT msg_id, message FROM pgmq.q_${Q} WHERE msg_id = ANY($1::bigint[]) ORDER BY msg_id`, [batch]);
    assert.deepEqual(rows.map((r) => r.message.b), [1, 2, 3, 4, 5]);
  });

  // ---------------------------------------------------------------- reading
  await check('msg.read returns the oldest visible message with readCount 1', async () => {
    const before = Date.now();
    const m = await pgmq.msg.read(Q, 30);
    assert.equal(m.msgId, id1);
    assert.equal(m.readCount, 1);
    assert.deepEqual(m.message, { hello: 'world', n: 1 });
    near(m.vt, before + 30 * 1000, 5000, 'read vt');
    assert.ok(m.enqueuedAt instanceof Date && !Number.isNaN(m.enqueuedAt.getTime()));
  });

  await check('msg.readBatch skips read and delayed messages, honours the count', async () => {
    const ms = await pgmq.msg.readBatch(Q, 30, 3);
    assert.deepEqual(ms.map((m) => m.msgId), [3, 4, 5]);
    assert.ok(ms.every((m) => m.readCount === 1));
    const rest = await pgmq.msg.readBatch(Q, 30, 10);
    assert.deepEqual(rest.map((m) => m.msgId), [6, 7]);
  });

  await check('msg.readBatch with nothing visible returns []', async () => {
    assert.deepEqual(await pgmq.msg.readBatch(Q, 30, 10), []);
  });

  await check('msg.read with nothing visible returns undefined', async () => {
    assert.equal(await pgmq.msg.read(Q, 30), undefined);
  });

  // ---------------------------------------------------------------- visibility
  await check('msg.setVt makes a message visible again (readCount unchanged)', async () => {
    const m = await pgmq.msg.setVt(Q, 3, 0);
    assert.equal(m.msgId, 3);
    assert.equal(m.readCount, 1);
    near(m.vt, Date.now(), 5000, 'setVt vt');
    const again = await pgmq.msg.read(Q, 30);
    assert.equal(again.msgId, 3);
    assert.equal(again.readCount, 2);
  });

  await check('msg.setVt of a missing id returns undefined', async () => {
    assert.equal(await pgmq.msg.setVt(Q, 999999, 10), undefined);
  });

  await check('msg.pop takes the oldest visible message without counting a read', async () => {
    await pgmq.msg.setVt(Q, 4, 0);
    const m = await pgmq.msg.pop(Q);
    assert.equal(m.msgId, 4);
    assert.equal(m.readCount, 1);
    assert.deepEqual(m.message, { b: 2 });
    const rows = await one(`SELECT (SELECT count(*) FROM pgmq.q_${Q} WHERE msg_id = 4)::int AS q,
                                   (SELECT count(*) FROM pgmq.a_${Q} WHERE msg_id = 4)::int AS a`);
    assert.deepEqual(rows[0], { q: 0, a: 0 });
  });

  await check('msg.pop with nothing visible returns undefined', async () => {
    assert.equal(await pgmq.msg.pop(Q), undefined);
  });

  // ---------------------------------------------------------------- completing
  await check('msg.archive moves the message to the archive: true', async () => {
    assert.equal(await pgmq.msg.archive(Q, id1), true);
    const rows = await one(`SELECT msg_id, read_ct, message FROM pgmq.a_${Q}`);
    assert.deepEqual(rows, [{ msg_id: String(id1), read_ct: 1, message: { hello: 'world', n: 1 } }]);
  });

  await check('msg.archive of a missing id: false', async () => {
    assert.equal(await pgmq.msg.archive(Q, id1), false);
  });

  await check('msg.archiveBatch returns the ids archived, skipping missing ones', async () => {
    const got = await pgmq.msg.archiveBatch(Q, [5, 424242, 6]);
    assert.deepEqual([...got].sort((a, b) => a - b), [5, 6]);
  });

  await check('msg.delete: true, then false', async () => {
    assert.equal(await pgmq.msg.delete(Q, 7), true);
    assert.equal(await pgmq.msg.delete(Q, 7), false);
  });

  await check('msg.deleteBatch returns the ids deleted, skipping missing ones', async () => {
    const ids = await pgmq.msg.sendBatch(Q, [{ d: 1 }, { d: 2 }, { d: 3 }]);
    assert.deepEqual(ids, [8, 9, 10]);
    const got = await pgmq.msg.deleteBatch(Q, [...ids, 777777]);
    assert.deepEqual([...got].sort((a, b) => a - b), ids);
  });

  // ---------------------------------------------------------------- observability
  await check('queue.getMetrics', async () => {
    // Left: 2 (delayed), 3 (read). Sent so far: 10.
    const m = await pgmq.queue.getMetrics(Q);
    assert.equal(m.queueName, Q);
    assert.equal(m.queueLength, 2);
    assert.equal(m.totalMessages, 10);
    assert.equal(typeof m.newestMsgAgeSec, 'number');
    assert.equal(typeof m.oldestMsgAgeSec, 'number');
    assert.ok(m.oldestMsgAgeSec >= m.newestMsgAgeSec);
    near(m.scrapeTime, Date.now(), 60000, 'scrapeTime');
  });

  await check('queue.getMetrics of an empty queue: no ages', async () => {
    const m = await pgmq.queue.getMetrics(QU);
    assert.equal(m.queueLength, 0);
    assert.equal(m.totalMessages, 0);
    assert.equal(m.newestMsgAgeSec, undefined);
    assert.equal(m.oldestMsgAgeSec, undefined);
  });

  await check('queue.getAllMetrics has one entry per queue', async () => {
    const all = await pgmq.queue.getAllMetrics();
    const names = all.map((m) => m.queueName).sort();
    assert.deepEqual(names, [Q, QG, QU].sort());
    assert.equal(all.find((m) => m.queueName === Q).queueLength, 2);
  });

  // ---------------------------------------------------------------- purge, detach, drop
  await check('queue.purge empties the queue, keeps the archive and the identity', async () => {
    await pgmq.queue.purge(Q);
    const m = await pgmq.queue.getMetrics(Q);
    assert.equal(m.queueLength, 0);
    assert.equal(m.totalMessages, 10);
    const rows = await one(`SELECT count(*)::int AS a FROM pgmq.a_${Q}`);
    assert.equal(rows[0].a, 3);
    assert.equal(await pgmq.msg.send(Q, { after: 'purge' }), 11);
  });

  await check('queue.detachArchive is accepted', async () => {
    await pgmq.queue.detachArchive(Q);
    const rows = await one(`SELECT to_regclass('pgmq.a_' || $1::text) IS NOT NULL AS a`, [Q]);
    assert.equal(rows[0].a, true);
  });

  await check('queue.drop removes queues; dropping a missing queue is not an error', async () => {
    await pgmq.queue.drop(QG);
    await pgmq.queue.drop(QG);
    await pgmq.queue.drop(QU);
    const names = (await pgmq.queue.list()).map((q) => q.name);
    assert.deepEqual(names, [Q]);
    const rows = await one(`SELECT to_regclass('pgmq.q_' || $1::text) IS NULL AS gone`, [QG]);
    assert.equal(rows[0].gone, true);
  });

  await check('concurrent readBatch calls never hand out a message twice', async () => {
    const ids = await pgmq.msg.sendBatch(Q, Array.from({ length: 40 }, (_, i) => ({ c: i })));
    const batches = await Promise.all(Array.from({ length: 8 }, () => pgmq.msg.readBatch(Q, 60, 7)));
    const seen = batches.flat().map((m) => m.msgId);
    assert.equal(new Set(seen).size, seen.length, 'duplicate delivery');
    // Message 11 (sent after the purge) is still visible too.
    assert.deepEqual([...seen].sort((a, b) => a - b), [11, ...ids]);
  });

  await check('an unknown queue is a plain relation error', async () => {
    await assert.rejects(pgmq.msg.send('pgmqjs_nosuch', { x: 1 }), /relation "pgmq.q_pgmqjs_nosuch" does not exist/);
  });

  await check('an invalid queue name is refused with PGMQ\'s message', async () => {
    await assert.rejects(pgmq.queue.create('bad;name'), /queue name contains invalid characters: \$, ;, --, or \\'/);
  });

  await check('queue.drop of the last queue', async () => {
    await pgmq.queue.drop(Q);
    assert.deepEqual(await pgmq.queue.list(), []);
  });
} finally {
  await pgmq.close();
  await db.end();
}

console.log(`1..${n}`);
if (failed > 0) {
  console.log(`# ${failed} of ${n} failed`);
  process.exit(1);
}
