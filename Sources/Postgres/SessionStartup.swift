import Posix

/// What every connection of the pipeline asks the server for at start-up: keepalives and a
/// user timeout on the *server's* side of the socket, and an `application_name` naming the
/// tool, its run and its session.
///
/// Why the server's side: a client that gives up on a partition (its own keepalives, issue 22)
/// closes its socket, but the server never hears of it. A backend waiting for COPY data sends
/// nothing, so without keepalives it waits in `ClientRead` for the kernel's two hours, inside
/// a transaction that holds the file's advisory lock, and the client's next session waits
/// behind it. With these settings (per-session GUCs, so any role may set them) the server ends
/// such a backend after ~25 s of silence, and ``applicationName(tool:run:session:connection:pipeline:)``
/// lets `load` prove a backend is its own orphan and end it sooner.
public enum SessionStartup {
    /// Sent as `-c name=value` in the startup `options`, unless the user's options set the name.
    public static let serverTimeouts: [(name: String, value: String)] = [
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
        ("tcp_user_timeout", "20000"),
    ]

    /// The startup pairs to pass to ``PostgresConnection/init(conninfo:startup:)``: `options`
    /// (the user's own, from the conninfo or `PGOPTIONS`, then ours) and `application_name`.
    public static func parameters(
        conninfo: String, applicationName: String,
        environment: [String: String] = processEnvironment()
    ) throws -> [(keyword: String, value: String)] {
        let given = try ConnectionSettings.parse(conninfo).last { $0.0 == "options" }?.1 ?? environment["PGOPTIONS"] ?? ""
        let ours = serverTimeouts.filter { !given.contains($0.name) }.map { "-c \($0.name)=\($0.value)" }
        let options = ([given] + ours).filter { !$0.isEmpty }.joined(separator: " ")
        return [("options", options), ("application_name", applicationName)]
    }

    /// `ingest-load 3fa9c2d1.1.4 host:1234`: the tool, then `run.session.connection` (a random
    /// run token per process, the commit session, a counter per connection made), then the
    /// pipeline's name. The identifying part comes first: the server keeps 63 bytes of it.
    public static func applicationName(tool: String, run: String, session: Int, connection: Int, pipeline: String) -> String {
        "ingest-\(tool) \(run).\(session).\(connection)" + (pipeline.isEmpty ? "" : " \(pipeline)")
    }
}
