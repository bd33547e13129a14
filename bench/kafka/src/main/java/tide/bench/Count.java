package tide.bench;

import java.util.Properties;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams count of bench/bench_kafka.lua, the same job as
 * tide's bench/kafka/kcount.lua: IN (String serdes) grouped by its key
 * (no repartition: the key is not changed), counted in the RocksDB store
 * "counts" with its changelog topic (APP_ID-counts-changelog, Kafka
 * Streams' defaults: logging on, compacted), and each key's new count
 * sent to OUT as a decimal string. The record cache is off
 * (statestore.cache.max.bytes=0) so that, as tide's job does, every
 * input sends its new count and writes it to the changelog; with its
 * default cache Kafka Streams would send and log one update per key per
 * commit instead, a different job. One stream thread.
 *
 * GUARANTEE is at_least_once or exactly_once_v2 (processing.guarantee;
 * commit.interval.ms stays at Kafka Streams' default for each: 30 s and
 * 100 ms). It closes once it sent N updates (Run).
 *
 * Usage: Count BOOTSTRAP IN OUT N APP_ID STATE_DIR GUARANTEE
 */
public final class Count {
    private Count() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 7) {
            System.err.println("usage: Count BOOTSTRAP IN OUT N APP_ID "
                               + "STATE_DIR GUARANTEE");
            System.exit(2);
        }
        final Run run = new Run(Long.parseLong(args[3]));
        Properties p = Run.props(args[0], args[4], args[5], args[6]);
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);

        StreamsBuilder b = new StreamsBuilder();
        b.stream(args[1], Consumed.with(Serdes.String(), Serdes.String()))
            .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
            .count(Materialized.as("counts"))
            .toStream()
            .mapValues(v -> {
                run.seen();
                return Long.toString(v);
            })
            .to(args[2], Produced.with(Serdes.String(), Serdes.String()));
        run.run(b.build(), p, "updates");
    }
}
