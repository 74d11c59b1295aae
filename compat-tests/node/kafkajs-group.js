#!/usr/bin/env node
// kafkajs consumer-group driver for the Kairos compat-tests (run by pytest as a subprocess).
//
//   node kafkajs-group.js COMMAND BOOTSTRAP 'JSON-ARGS'
//
// Prints exactly one JSON line on stdout (the result) and exits 0, or prints the
// error on stderr and exits 1. Kafkajs' own logs go to stderr.
//
// Commands:
//   consume {"topic","groupId","clientId","count"?,"idleMs"?,"maxMs","fromBeginning":true}
//        subscribe + run/eachMessage, commit every record's offset + 1 (autoCommit off,
//        commitOffsets after each message); stop when `count` records arrived, or when
//        `idleMs` passed without a record after the member joined; then disconnect
//        (LeaveGroup).
//        -> {"records":[{"partition","offset","key","value"}], "joins":[{"memberId",
//            "generationId"?, "isLeader","assignment":{topic:[partitions]}, "atMs"}], "errors":[...]}
//   admin {"groupId","topic"}
//        -> {"offsets": fetchOffsets({groupId, topics:[topic]}),
//            "describe": describeGroups([groupId]).groups, "list": listGroups().groups}
'use strict';

const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [command, bootstrap, rawArgs] = process.argv.slice(2);
  const args = rawArgs ? JSON.parse(rawArgs) : {};
  const kafka = new Kafka({
    clientId: args.clientId || 'kairos-compat-kafkajs-group',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, label, log }) => {
      process.stderr.write(`[kafkajs ${label}] ${namespace}: ${log.message} ${JSON.stringify(log)}\n`);
    },
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 5, initialRetryTime: 200 },
  });

  let result;
  if (command === 'consume') {
    const t0 = Date.now();
    const consumer = kafka.consumer({
      groupId: args.groupId,
      sessionTimeout: args.sessionTimeout || 10000,
      heartbeatInterval: 500,
      rebalanceTimeout: 20000,
      maxWaitTimeInMs: 200,
    });
    const records = [];
    const joins = [];
    const errors = [];
    let lastActivity = null;
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      joins.push({
        memberId: e.payload.memberId,
        isLeader: e.payload.isLeader,
        assignment: e.payload.memberAssignment,
        atMs: Date.now() - t0,
      });
      lastActivity = Date.now();
    });
    consumer.on(consumer.events.CRASH, (e) => errors.push(String(e.payload.error)));
    await consumer.connect();
    await consumer.subscribe({ topics: [args.topic], fromBeginning: args.fromBeginning !== false });
    let done;
    const finished = new Promise((resolve) => { done = resolve; });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        records.push({
          partition,
          offset: message.offset,
          key: message.key === null ? null : message.key.toString('utf8'),
          value: message.value === null ? null : message.value.toString('utf8'),
        });
        await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
        lastActivity = Date.now();
        if (args.count !== undefined && records.length >= args.count) done();
      },
    });
    const maxMs = args.maxMs || 30000;
    const timer = setInterval(() => {
      const now = Date.now();
      if (now - t0 > maxMs) done();
      if (args.idleMs && lastActivity !== null && joins.length > 0 && now - lastActivity > args.idleMs) done();
    }, 100);
    await finished;
    clearInterval(timer);
    await consumer.disconnect();
    result = { records, joins, errors, elapsedMs: Date.now() - t0 };
  } else if (command === 'admin') {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchOffsets({ groupId: args.groupId, topics: [args.topic] });
      const describe = (await admin.describeGroups([args.groupId])).groups.map((g) => ({
        groupId: g.groupId,
        state: g.state,
        protocolType: g.protocolType,
        protocol: g.protocol,
        errorCode: g.errorCode,
        members: g.members.map((m) => ({ memberId: m.memberId, clientId: m.clientId, clientHost: m.clientHost })),
      }));
      const list = (await admin.listGroups()).groups;
      result = { offsets, describe, list };
    } finally {
      await admin.disconnect();
    }
  } else {
    throw new Error(`unknown command ${command}`);
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`kafkajs-group error: ${e && e.stack ? e.stack : e}\n${JSON.stringify(e)}\n`);
    process.exit(1);
  },
);
