package tide.bench;

import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams pass-through of bench/bench_kafka.lua: reads IN from
 * the beginning with String serdes and maps each value to itself into
 * OUT (the same as tide's bench/jobs/kpass.lua), one stream thread,
 * Kafka Streams' defaults otherwise (at-least-once). Kafka Streams has
 * no drain mode: the app counts what it mapped and closes (which flushes
 * the producer and commits) once it has seen N messages; with N = 0, as
 * soon as it is running (its fixed cost: the JVM, the group join).
 *
 * Usage: PassThrough BOOTSTRAP IN OUT N APP_ID STATE_DIR
 */
public final class PassThrough {
    private PassThrough() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: PassThrough BOOTSTRAP IN OUT N APP_ID "
                               + "STATE_DIR");
            System.exit(2);
        }
        final long n = Long.parseLong(args[3]);
        final AtomicLong seen = new AtomicLong();
        final CountDownLatch done = new CountDownLatch(1);

        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[4]);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[5]);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");

        StreamsBuilder b = new StreamsBuilder();
        b.stream(args[1], Consumed.with(Serdes.String(), Serdes.String()))
            .mapValues(v -> {
                if (seen.incrementAndGet() == n) {
                    done.countDown();
                }
                return v;
            })
            .to(args[2], Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams ks = new KafkaStreams(b.build(), p);
        ks.setUncaughtExceptionHandler(e -> {
            System.err.println("kafka streams: " + e);
            done.countDown();
            return org.apache.kafka.streams.errors
                .StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                .SHUTDOWN_CLIENT;
        });
        if (n == 0) {
            ks.setStateListener((now, before) -> {
                if (now == KafkaStreams.State.RUNNING) {
                    done.countDown();
                }
            });
        }
        ks.start();
        if (!done.await(600, TimeUnit.SECONDS)) {
            System.err.println("kafka streams: timed out after "
                               + seen.get() + " of " + n + " messages");
        }
        ks.close();
        System.out.println("kstreams msgs " + seen.get());
        System.exit(seen.get() == n ? 0 : 1);
    }
}
