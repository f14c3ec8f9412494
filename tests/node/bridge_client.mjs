// A stand-in for a non-Python backend: calls the speech platform's AMQP bridge with amqplib.
//   node bridge_client.mjs AMQP_URL ALGORITHM AUDIO_FILE
// Sends a good request and a malformed one through RabbitMQ's direct reply-to, then prints
// one JSON line per case: {"case", "correlationId", "reply"} (binary values as base64).
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import amqp from "amqplib";
import { encode, decode } from "@msgpack/msgpack";

const [url, algorithm, file] = process.argv.slice(2);
const REPLY_TO = "amq.rabbitmq.reply-to";
const TIMEOUT_MS = 90_000;

const connection = await amqp.connect(url);
const channel = await connection.createChannel();
const waiting = new Map();
// Direct reply-to: consume the pseudo-queue with noAck before publishing on this channel.
await channel.consume(REPLY_TO, (msg) => {
  const resolve = waiting.get(msg.properties.correlationId);
  if (resolve) resolve(decode(msg.content));
}, { noAck: true });

function call(body) {
  const correlationId = randomUUID();
  const reply = new Promise((resolve, reject) => {
    waiting.set(correlationId, resolve);
    // unref: a pending timer must not keep the process alive once every reply is in
    setTimeout(() => reject(new Error(`no reply for ${correlationId}`)), TIMEOUT_MS).unref();
  });
  channel.sendToQueue(`rpc.${algorithm}`, body, { replyTo: REPLY_TO, correlationId });
  return reply.then((r) => ({ correlationId, reply: r }));
}

const packed = (value) => {
  const bytes = encode(value);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
};
const plain = (_, v) => (v instanceof Uint8Array ? Buffer.from(v).toString("base64") : v);
const cases = {
  good: packed({ audio: readFileSync(file), options: {}, timeout: 60 }),
  not_msgpack: Buffer.from([0xc1, ...Buffer.from("not msgpack")]), // 0xc1: never used by msgpack
  no_audio: packed({ options: {} }),
};
try {
  const answers = await Promise.all(Object.entries(cases).map(async ([name, body]) => ({ case: name, ...(await call(body)) })));
  answers.forEach((a) => console.log(JSON.stringify(a, plain)));
} finally {
  await connection.close();
}
