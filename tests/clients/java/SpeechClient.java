// A small reusable Java client of the AMQP bridge (`python -m producer bridge`), and the
// program tests/clients/test_java_client.py drives. One file, no build tool: JDK 17's source
// launcher runs it with Debian's jars (librabbitmq-client-java, libmsgpack-java,
// libslf4j-java; `make test-clients` installs them):
//
//   java -cp /usr/share/java/amqp-client.jar:/usr/share/java/msgpack-core.jar:\
//     /usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-nop.jar \
//     tests/clients/java/SpeechClient.java asr tests/data/fox_rms.wav
//
// Modes (AMQP_URL names the broker):
//   asr FILE              prints the transcript
//   bad FILE              expects a typed error: prints "SpeechException<TAB>type<TAB>message"
//   parallel N FILE...    N threads at once on one client, thread i sending FILE[i % count];
//                         prints "FILE<TAB>duration<TAB>transcript" per thread, then
//                         "peak<TAB>requests in flight at once" and "stray<TAB>replies
//                         matching no request"
//
// The design: one connection and one channel. RabbitMQ's direct reply-to
// (amq.rabbitmq.reply-to) needs the consumer and the publishes on the same channel, so the
// channel is shared: publishes are serialized under a lock (the Java client does not
// promise concurrent publishes on one channel), and the single consumer completes the
// future its reply's correlation id names. Every wait is bounded (the request's timeout
// plus a margin); a request the broker cannot route (no bridge) or a lost connection fails
// its callers at once, as typed SpeechExceptions with the platform's error types.

import com.rabbitmq.client.*;
import java.io.IOException;
import java.nio.file.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import org.msgpack.core.*;
import org.msgpack.value.*;

public class SpeechClient implements AutoCloseable {

    /** An error reply from the bridge ({"ok": false, "error": {"type", "message"}}), or
     *  the client's own failure under the platform's names (CallTimeout, BrokerUnavailable). */
    public static class SpeechException extends Exception {
        private static final long serialVersionUID = 1L;
        private final String type;

        public SpeechException(String type, String message) {
            super(type + ": " + message);
            this.type = type;
        }

        public String type() { return type; }

        public String detail() {
            return getMessage().substring(type.length() + 2);
        }
    }

    private static final String DIRECT = "amq.rabbitmq.reply-to";
    private static final double MARGIN_SECONDS = 10;  // the bridge answers within the timeout

    private final Connection connection;
    private final Channel channel;
    private final Object publishLock = new Object();
    private final ConcurrentMap<String, CompletableFuture<Map<String, Object>>> pending =
        new ConcurrentHashMap<>();
    private final AtomicInteger peak = new AtomicInteger();
    private final AtomicInteger stray = new AtomicInteger();

    public SpeechClient(String url) throws Exception {
        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(url);
        factory.setConnectionTimeout(10_000);
        // A recovered channel would not get the replies of the requests sent before: fail
        // them instead (below) and let the caller decide whether to call again.
        factory.setAutomaticRecoveryEnabled(false);
        connection = factory.newConnection("speech-java-client");
        channel = connection.createChannel();
        connection.addShutdownListener(cause -> failAll("BrokerUnavailable",
            "connection closed: " + cause.getMessage()));
        // Published with mandatory: a request no queue takes comes back here at once
        channel.addReturnListener(ret -> fail(ret.getProperties().getCorrelationId(),
            "BrokerUnavailable", "request unroutable (" + ret.getReplyText() + "): is a bridge serving "
                + ret.getRoutingKey() + "?"));
        // Direct reply-to: consume (no ack) before the first publish
        channel.basicConsume(DIRECT, true, (tag, delivery) -> onReply(delivery), tag -> {
            failAll("BrokerUnavailable", "reply consumer cancelled");
        });
    }

    /** Speech to text: {"text", "words", "duration"}. */
    public Map<String, Object> asr(byte[] audio) throws SpeechException, InterruptedException {
        return call("asr", audio, Map.of(), 60);
    }

    /** Any operation of the bridge (queue rpc.OPERATION), waiting at most timeout + 10 s. */
    public Map<String, Object> call(String operation, byte[] audio, Map<String, Object> options,
                                    double timeoutSeconds)
            throws SpeechException, InterruptedException {
        String correlationId = UUID.randomUUID().toString();
        CompletableFuture<Map<String, Object>> reply = new CompletableFuture<>();
        pending.put(correlationId, reply);
        peak.accumulateAndGet(pending.size(), Math::max);
        try {
            byte[] body = request(audio, options, timeoutSeconds);
            AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
                .replyTo(DIRECT).correlationId(correlationId)
                .contentType("application/msgpack").build();
            synchronized (publishLock) {
                channel.basicPublish("", "rpc." + operation, true, props, body);
            }
            long waitMillis = (long) ((timeoutSeconds + MARGIN_SECONDS) * 1000);
            return reply.get(waitMillis, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new SpeechException("CallTimeout",
                "no reply within " + (timeoutSeconds + MARGIN_SECONDS) + " s");
        } catch (ExecutionException e) {
            if (e.getCause() instanceof SpeechException s) throw s;
            throw new SpeechException("RemoteError", String.valueOf(e.getCause()));
        } catch (IOException | AlreadyClosedException e) {
            throw new SpeechException("BrokerUnavailable", "cannot publish: " + e.getMessage());
        } finally {
            pending.remove(correlationId);
        }
    }

    /** The most requests this client has had waiting for replies at once. */
    public int peakInFlight() { return peak.get(); }

    /** Replies whose correlation id named no waiting request (late ones, after a timeout). */
    public int strayReplies() { return stray.get(); }

    @Override
    public void close() throws IOException {
        try {
            connection.close(5_000);
        } catch (AlreadyClosedException e) {
            // closed already: nothing to do
        }
    }

    private void onReply(Delivery delivery) {
        String correlationId = delivery.getProperties().getCorrelationId();
        CompletableFuture<Map<String, Object>> waiting =
            correlationId == null ? null : pending.get(correlationId);
        if (waiting == null) {
            stray.incrementAndGet();
            return;
        }
        try {
            Map<String, Object> reply = asMap(MessagePack.newDefaultUnpacker(delivery.getBody())
                .unpackValue());
            if (Boolean.TRUE.equals(reply.get("ok"))) {
                waiting.complete(asMap(reply.get("result")));
            } else {
                Map<String, Object> error = asMap(reply.get("error"));
                waiting.completeExceptionally(new SpeechException(
                    String.valueOf(error.get("type")), String.valueOf(error.get("message"))));
            }
        } catch (IOException | RuntimeException e) {
            waiting.completeExceptionally(new SpeechException("RemoteError",
                "unreadable reply: " + e));
        }
    }

    private void fail(String correlationId, String type, String message) {
        CompletableFuture<Map<String, Object>> waiting =
            correlationId == null ? null : pending.get(correlationId);
        if (waiting != null) waiting.completeExceptionally(new SpeechException(type, message));
    }

    private void failAll(String type, String message) {
        pending.values().forEach(f -> f.completeExceptionally(new SpeechException(type, message)));
    }

    private static byte[] request(byte[] audio, Map<String, Object> options, double timeout)
            throws IOException {
        MessageBufferPacker packer = MessagePack.newDefaultBufferPacker();
        packer.packMapHeader(3);
        packer.packString("audio").packBinaryHeader(audio.length).writePayload(audio);
        packer.packString("options");
        pack(packer, options);
        packer.packString("timeout").packDouble(timeout);
        return packer.toByteArray();
    }

    private static void pack(MessagePacker packer, Object value) throws IOException {
        if (value == null) {
            packer.packNil();
        } else if (value instanceof String s) {
            packer.packString(s);
        } else if (value instanceof Boolean b) {
            packer.packBoolean(b);
        } else if (value instanceof Integer || value instanceof Long) {
            packer.packLong(((Number) value).longValue());
        } else if (value instanceof Number n) {
            packer.packDouble(n.doubleValue());
        } else if (value instanceof byte[] bytes) {
            packer.packBinaryHeader(bytes.length).writePayload(bytes);
        } else if (value instanceof Map<?, ?> map) {
            packer.packMapHeader(map.size());
            for (Map.Entry<?, ?> entry : map.entrySet()) {
                packer.packString(String.valueOf(entry.getKey()));
                pack(packer, entry.getValue());
            }
        } else if (value instanceof List<?> list) {
            packer.packArrayHeader(list.size());
            for (Object item : list) pack(packer, item);
        } else {
            throw new IllegalArgumentException("cannot send a " + value.getClass().getName());
        }
    }

    /** msgpack to plain Java: maps, lists, String, Long, Double, Boolean, byte[], null. */
    private static Object plain(Value value) {
        switch (value.getValueType()) {
            case NIL: return null;
            case BOOLEAN: return value.asBooleanValue().getBoolean();
            case INTEGER: return value.asIntegerValue().toLong();
            case FLOAT: return value.asFloatValue().toDouble();
            case STRING: return value.asStringValue().asString();
            case BINARY: return value.asBinaryValue().asByteArray();
            case ARRAY: {
                List<Object> list = new ArrayList<>();
                for (Value item : value.asArrayValue()) list.add(plain(item));
                return list;
            }
            case MAP: {
                Map<String, Object> map = new LinkedHashMap<>();
                for (Map.Entry<Value, Value> e : value.asMapValue().entrySet()) {
                    map.put(String.valueOf(plain(e.getKey())), plain(e.getValue()));
                }
                return map;
            }
            default: return value.toString();
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> asMap(Object value) {
        Object map = value instanceof Value v ? plain(v) : value;
        if (!(map instanceof Map)) throw new IllegalStateException("not a map: " + map);
        return (Map<String, Object>) map;
    }

    // ---- the program the tests drive ----

    public static void main(String[] args) throws Exception {
        if (args.length < 2) usage();
        String url = System.getenv().getOrDefault("AMQP_URL", "amqp://guest:guest@localhost:5672");
        try (SpeechClient client = new SpeechClient(url)) {
            switch (args[0]) {
                case "asr" -> System.out.println(client.asr(read(args[1])).get("text"));
                case "bad" -> {
                    try {
                        Map<String, Object> result = client.asr(read(args[1]));
                        System.out.println("ok\t" + result);
                        System.exit(3);  // the junk was transcribed: the test fails
                    } catch (SpeechException e) {
                        System.out.println("SpeechException\t" + e.type() + "\t" + e.detail());
                    }
                }
                case "parallel" -> parallel(client, Integer.parseInt(args[1]),
                    Arrays.copyOfRange(args, 2, args.length));
                default -> usage();
            }
        }
    }

    private static void parallel(SpeechClient client, int threads, String[] files)
            throws Exception {
        if (files.length == 0) usage();
        CyclicBarrier start = new CyclicBarrier(threads);  // all send at once
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        List<Future<String>> lines = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            String file = files[i % files.length];
            lines.add(pool.submit(() -> {
                byte[] audio = read(file);
                start.await(30, TimeUnit.SECONDS);
                Map<String, Object> result = client.asr(audio);
                return file + "\t" + result.get("duration") + "\t" + result.get("text");
            }));
        }
        pool.shutdown();
        int failed = 0;
        for (Future<String> line : lines) {
            try {
                System.out.println(line.get(120, TimeUnit.SECONDS));
            } catch (ExecutionException e) {
                failed++;
                System.err.println("failed: " + e.getCause());
            }
        }
        System.out.println("peak\t" + client.peakInFlight());
        System.out.println("stray\t" + client.strayReplies());
        if (failed > 0) System.exit(1);
    }

    private static byte[] read(String file) throws IOException {
        return Files.readAllBytes(Path.of(file));
    }

    private static void usage() {
        System.err.println("usage: SpeechClient asr FILE | bad FILE | parallel N FILE...");
        System.exit(2);
    }
}
