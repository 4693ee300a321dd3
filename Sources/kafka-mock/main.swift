// A Kafka cluster for tests: librdkafka's mock cluster, which speaks the real protocol over TCP.
// Prints the bootstrap address on stdout, then runs until stdin closes or SIGTERM/SIGINT.
// SIGUSR1 takes every broker down (connections refused), SIGUSR2 brings them back.
//
//   kafka-mock [--brokers N] [--topic NAME[:PARTITIONS]]…
import Kafka

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func usage(_ problem: String) -> Never {
    writeError("kafka-mock: \(problem)\nusage: kafka-mock [--brokers N] [--topic NAME[:PARTITIONS]]…\n")
    exit(64)
}

func writeError(_ text: String) {
    var copy = text
    copy.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

var brokers = 1
var topics: [(String, Int)] = []
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--brokers":
        guard let value = arguments.popFirst().flatMap({ Int($0) }), value >= 1 else { usage("--brokers needs a positive number") }
        brokers = value
    case "--topic":
        guard let value = arguments.popFirst(), !value.isEmpty else { usage("--topic needs NAME[:PARTITIONS]") }
        let parts = value.split(separator: ":", maxSplits: 1)
        guard let partitions = parts.count == 2 ? Int(parts[1]) : 3, partitions >= 1 else { usage("--topic \(value): bad partition count") }
        topics.append((String(parts[0]), partitions))
    case "--help", "-h":
        print("usage: kafka-mock [--brokers N] [--topic NAME[:PARTITIONS]]…  (default: --topic events:3)")
        exit(0)
    default:
        usage("unknown argument \(argument)")
    }
}
if topics.isEmpty { topics = [("events", 3)] }

// Signals are blocked (in librdkafka's threads too, created after this) and taken below.
var signals = sigset_t()
sigemptyset(&signals)
for s in [SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP] { sigaddset(&signals, s) }
pthread_sigmask(SIG_BLOCK, &signals, nil)

let cluster: KafkaMockCluster
do {
    cluster = try KafkaMockCluster(brokers: brokers, topics: topics)
} catch {
    writeError("kafka-mock: \(error)\n")
    exit(1)
}
var line = Array((cluster.bootstrapServers + "\n").utf8)
_ = write(1, &line, line.count)

// One thread, no handlers: poll stdin when it is a pipe (closed: the test that started us died,
// so end the cluster too) and take blocked signals as they become pending.
var status = stat()
let watchInput = fstat(0, &status) == 0 && (status.st_mode & S_IFMT) == S_IFIFO
var input = pollfd(fd: watchInput ? 0 : -1, events: Int16(POLLIN), revents: 0)
var buffer = [UInt8](repeating: 0, count: 4096)
while true {
    if poll(&input, 1, 100) == 1 {
        let n = read(0, &buffer, buffer.count)
        if n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN) { exit(0) }
    }
    var pending = sigset_t()
    sigpending(&pending)
    for s in [SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP] where sigismember(&pending, s) == 1 {
        var only = sigset_t()
        sigemptyset(&only)
        sigaddset(&only, s)
        var received: Int32 = 0
        sigwait(&only, &received)
        switch received {
        case SIGUSR1:
            for id in 1...Int32(brokers) { cluster.setBroker(id, up: false) }
            writeError("kafka-mock: brokers down\n")
        case SIGUSR2:
            for id in 1...Int32(brokers) { cluster.setBroker(id, up: true) }
            writeError("kafka-mock: brokers up\n")
        default:
            exit(0)
        }
    }
}
