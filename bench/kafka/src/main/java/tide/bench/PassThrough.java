package tide.bench;

import java.util.Properties;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams pass-through of bench/bench_kafka.lua: reads IN from
 * the beginning with String serdes and maps each value to itself into
 * OUT (the same as tide's bench/jobs/kpass.lua), one stream thread,
 * Kafka Streams' defaults otherwise; GUARANTEE (processing.guarantee:
 * at_least_once, the default, or exactly_once_v2). It closes once it
 * mapped N messages (Run).
 *
 * Usage: PassThrough BOOTSTRAP IN OUT N APP_ID STATE_DIR [GUARANTEE]
 */
public final class PassThrough {
    private PassThrough() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6 && args.length != 7) {
            System.err.println("usage: PassThrough BOOTSTRAP IN OUT N APP_ID "
                               + "STATE_DIR [GUARANTEE]");
            System.exit(2);
        }
        final Run run = new Run(Long.parseLong(args[3]));
        Properties p = Run.props(args[0], args[4], args[5],
                                 args.length == 7 ? args[6]
                                 : StreamsConfig.AT_LEAST_ONCE);

        StreamsBuilder b = new StreamsBuilder();
        b.stream(args[1], Consumed.with(Serdes.String(), Serdes.String()))
            .mapValues(v -> {
                run.seen();
                return v;
            })
            .to(args[2], Produced.with(Serdes.String(), Serdes.String()));
        run.run(b.build(), p, "msgs");
    }
}
