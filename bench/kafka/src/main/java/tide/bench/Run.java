package tide.bench;

import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;

/**
 * What the bench's Kafka Streams apps share: their settings (one stream
 * thread, reads from the earliest offset, the given processing.guarantee)
 * and their end. Kafka Streams has no drain mode: an app counts what its
 * topology sent (seen(), called once a record) and closes (flush, commit)
 * once it has seen N; with N = 0, as soon as it is running (its fixed
 * cost: the JVM, the group join).
 */
final class Run {
    private final long n;
    private final AtomicLong seen = new AtomicLong();
    private final CountDownLatch done = new CountDownLatch(1);

    Run(long n) {
        this.n = n;
    }

    /** Counts one record the topology sent. */
    void seen() {
        if (seen.incrementAndGet() == n) {
            done.countDown();
        }
    }

    /** The common settings; the caller adds its own. */
    static Properties props(String bootstrap, String appId, String stateDir,
                            String guarantee) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        return p;
    }

    /** Runs topology t until N records were seen, closes it and exits:
     *  0 when all were, else 1. */
    void run(Topology t, Properties p, String what) throws Exception {
        KafkaStreams ks = new KafkaStreams(t, p);
        ks.setUncaughtExceptionHandler(e -> {
            System.err.println("kafka streams: " + e);
            done.countDown();
            return StreamsUncaughtExceptionHandler
                .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
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
                               + seen.get() + " of " + n + " " + what);
        }
        ks.close();
        System.out.println("kstreams " + what + " " + seen.get());
        System.exit(seen.get() == n ? 0 : 1);
    }
}
