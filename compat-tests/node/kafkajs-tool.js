#!/usr/bin/env node
// kafkajs driver for the Kairos compat-tests (run by pytest as a subprocess).
//
//   node kafkajs-tool.js COMMAND BOOTSTRAP 'JSON-ARGS'
//
// Prints exactly one JSON line on stdout (the result) and exits 0, or prints the
// error on stderr and exits 1. Kafkajs' own logs go to stderr.
//
// Commands:
//   create-topics  {"topics":[{"topic","numPartitions","configEntries":[{"name","value"}]}],
//                   "validateOnly":false}                 -> {"created": bool}
//   create-topic-error {"topic", "numPartitions"}         -> {"type","code","message"} of the error
//   list-topics    {}                                     -> {"topics":[...]}
//   metadata       {"topics":[...]}                       -> {"topics":[{"name","partitions":[{"partitionId","leader"}]}]}
//   offsets        {"topic"}                              -> {"offsets":[{"partition","offset","high","low"}]}
//   offsets-by-time {"topic","timestamp"}                 -> {"offsets":[{"partition","offset"}]}
//   delete-topics  {"topics":[...]}                       -> {"deleted": true}
//   describe-configs {"topic","names":[...]}              -> {"configs":{name: value}}
//   produce        {"topic","acks":-1,"compression":"gzip"|null,
//                   "messages":[{"key","value","headers":{k:v},"partition","timestamp"}]}
//                  (key/value: string, null, or {"b64": "..."} for bytes)
//                                                         -> {"results":[{"partition","baseOffset","errorCode"}]}
//   read           {"topic","partition","offset","count","maxMs"}
//                  kafkajs has no consumer without a group: this one joins a throwaway group,
//                  seeks `partition` to `offset`, never commits, and stops after `count`
//                  records or `maxMs`
//                                                         -> {"records":[{"offset","key","value"}]}
'use strict';

const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = require('kafkajs');

function bytes(v) {
  if (v === null || v === undefined) return v === undefined ? undefined : null;
  if (typeof v === 'object' && v.b64 !== undefined) return Buffer.from(v.b64, 'base64');
  return Buffer.from(String(v), 'utf8');
}

async function main() {
  const [command, bootstrap, rawArgs] = process.argv.slice(2);
  const args = rawArgs ? JSON.parse(rawArgs) : {};
  const kafka = new Kafka({
    clientId: 'kairos-compat-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, label, log }) => {
      process.stderr.write(`[kafkajs ${label}] ${namespace}: ${log.message} ${JSON.stringify(log)}\n`);
    },
    connectionTimeout: 5000,
    requestTimeout: 15000,
    retry: { retries: 3, initialRetryTime: 200 },
  });

  let result;
  if (command === 'read') {
    const consumer = kafka.consumer({
      groupId: `kairos-compat-read-${process.pid}-${Date.now()}`,
      maxWaitTimeInMs: 200,
    });
    await consumer.connect();
    const records = [];
    try {
      await consumer.subscribe({ topics: [args.topic], fromBeginning: true });
      let done;
      const finished = new Promise((resolve) => { done = resolve; });
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          if (partition !== args.partition) return;
          records.push({
            offset: message.offset,
            key: message.key === null ? null : message.key.toString('utf8'),
            value: message.value === null ? null : message.value.toString('utf8'),
          });
          if (records.length >= args.count) done();
        },
      });
      consumer.seek({ topic: args.topic, partition: args.partition, offset: String(args.offset) });
      const timer = setTimeout(done, args.maxMs || 30000);
      await finished;
      clearTimeout(timer);
    } finally {
      await consumer.disconnect();
    }
    result = { records };
  } else if (command === 'produce') {
    const producer = kafka.producer({ allowAutoTopicCreation: true, idempotent: false });
    await producer.connect();
    try {
      const compression = {
        gzip: CompressionTypes.GZIP, none: CompressionTypes.None, null: CompressionTypes.None,
      }[String(args.compression || 'none')];
      const messages = args.messages.map((m) => {
        const out = { value: bytes(m.value) };
        if (m.key !== undefined) out.key = bytes(m.key);
        if (m.headers) {
          out.headers = {};
          for (const [k, v] of Object.entries(m.headers)) {
            out.headers[k] = Array.isArray(v) ? v.map(bytes) : bytes(v);
          }
        }
        if (m.partition !== undefined) out.partition = m.partition;
        if (m.timestamp !== undefined) out.timestamp = String(m.timestamp);
        return out;
      });
      const meta = await producer.send({
        topic: args.topic,
        acks: args.acks === undefined ? -1 : args.acks,
        compression,
        messages,
      });
      result = { results: meta.map((r) => ({ partition: r.partition, baseOffset: r.baseOffset, errorCode: r.errorCode })) };
    } finally {
      await producer.disconnect();
    }
  } else {
    const admin = kafka.admin();
    await admin.connect();
    try {
      switch (command) {
        case 'create-topics': {
          const created = await admin.createTopics({
            topics: args.topics,
            validateOnly: !!args.validateOnly,
            waitForLeaders: !args.validateOnly,
            timeout: 10000,
          });
          result = { created };
          break;
        }
        case 'create-topic-error': {
          try {
            await admin.createTopics({
              topics: [{ topic: args.topic, numPartitions: args.numPartitions || 1 }],
              waitForLeaders: false,
            });
            result = { type: null, code: null, message: 'no error' };
          } catch (e) {
            const inner = (e.errors && e.errors[0]) || e;
            result = { type: inner.type || e.type || null, code: inner.code === undefined ? null : inner.code, message: String(e.message) };
          }
          break;
        }
        case 'list-topics':
          result = { topics: (await admin.listTopics()).sort() };
          break;
        case 'metadata': {
          const md = await admin.fetchTopicMetadata({ topics: args.topics });
          result = {
            topics: md.topics.map((t) => ({
              name: t.name,
              partitions: t.partitions
                .map((p) => ({ partitionId: p.partitionId, leader: p.leader, errorCode: p.partitionErrorCode }))
                .sort((a, b) => a.partitionId - b.partitionId),
            })),
          };
          break;
        }
        case 'offsets': {
          const offs = await admin.fetchTopicOffsets(args.topic);
          result = {
            offsets: offs
              .map((o) => ({ partition: o.partition, offset: o.offset, high: o.high, low: o.low }))
              .sort((a, b) => a.partition - b.partition),
          };
          break;
        }
        case 'offsets-by-time': {
          const offs = await admin.fetchTopicOffsetsByTimestamp(args.topic, args.timestamp);
          result = { offsets: offs.sort((a, b) => a.partition - b.partition) };
          break;
        }
        case 'delete-topics':
          await admin.deleteTopics({ topics: args.topics, timeout: 10000 });
          result = { deleted: true };
          break;
        case 'describe-configs': {
          const r = await admin.describeConfigs({
            includeSynonyms: false,
            resources: [{ type: ConfigResourceTypes.TOPIC, name: args.topic, configNames: args.names }],
          });
          const configs = {};
          for (const e of r.resources[0].configEntries) configs[e.configName] = e.configValue;
          result = { errorCode: r.resources[0].errorCode, configs };
          break;
        }
        default:
          throw new Error(`unknown command ${command}`);
      }
    } finally {
      await admin.disconnect();
    }
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`kafkajs-tool error: ${e && e.stack ? e.stack : e}\n${JSON.stringify(e)}\n`);
    process.exit(1);
  },
);
