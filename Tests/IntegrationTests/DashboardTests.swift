import Foundation
import Telemetry
import TestSupport
import Testing

/// The Grafana dashboard and the Compose services around it. Grafana itself is not installable
/// here: the JSON must parse, every SQL panel's query (time macros expanded as Grafana's
/// PostgreSQL datasource expands them) must run on the real schema and return rows, every
/// Prometheus panel must name metrics load exports, and `docker-compose config` must resolve.
@Suite struct DashboardTests {
    static let root = TestDatabase.packageRoot

    struct Panel {
        var title: String
        var datasource: String
        var queries: [String]
    }

    static func panels() throws -> [Panel] {
        let data = try Data(contentsOf: root.appendingPathComponent("docker/grafana/dashboards/ingest.json"))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["uid"] as? String == "ingest-pipeline")
        let panels = try #require(json["panels"] as? [[String: Any]])
        return try panels.map { panel in
            let datasource = try #require((panel["datasource"] as? [String: Any])?["uid"] as? String)
            let targets = try #require(panel["targets"] as? [[String: Any]])
            return Panel(
                title: panel["title"] as? String ?? "?", datasource: datasource,
                queries: targets.compactMap { ($0["rawSql"] ?? $0["expr"]) as? String })
        }
    }

    /// `$__timeFilter(col)`, `$__timeGroupAlias(col, '1m')`, `$__timeFrom()`, `$__timeTo()`, as
    /// Grafana's PostgreSQL datasource writes them (docs: "Macros" of the PostgreSQL data source).
    static func expandMacros(_ sql: String, from: String, to: String) throws -> String {
        var text = sql
        let filter = try Regex(#"\$__timeFilter\(([^)]+)\)"#)
        text = text.replacing(filter) { m in
            let column = String(m.output[1].substring ?? "")
            return "\(column) BETWEEN '\(from)' AND '\(to)'"
        }
        let group = try Regex(#"\$__timeGroupAlias\(([^,]+),\s*'(\d+)([smh])'\)"#)
        text = text.replacing(group) { m in
            let column = String(m.output[1].substring ?? "")
            let n = Int(m.output[2].substring ?? "") ?? 1
            let unit = ["s": 1, "m": 60, "h": 3600][String(m.output[3].substring ?? "m")] ?? 60
            return "floor(extract(epoch from \(column))/\(n * unit))*\(n * unit) AS \"time\""
        }
        text = text.replacingOccurrences(of: "$__timeFrom()", with: "'\(from)'")
        text = text.replacingOccurrences(of: "$__timeTo()", with: "'\(to)'")
        return text
    }

    @Test func everySQLPanelRunsOnTheSchemaAndReturnsRows() throws {
        let panels = try Self.panels()
        let sqlPanels = panels.filter { $0.datasource == "ingest-postgres" }
        #expect(sqlPanels.count >= 6)
        for title in ["Events per minute by type", "Revenue per minute", "Rejects by reason", "Arrival to commit (p50, p99)"] {
            #expect(sqlPanels.contains { $0.title == title }, "no panel \(title)")
        }
        try TestDatabase.with { db in
            // A little of everything the panels read, as load writes it.
            try db.query(
                """
                WITH c AS (
                  INSERT INTO ingest_checkpoints (source_file, file_bytes, file_sha256, rows_loaded, rows_rejected, first_seen, committed_at)
                  VALUES ('a.csv', 400, 'ab', 2, 1, now() - interval '2 seconds', now()) RETURNING id)
                INSERT INTO ecommerce_bad_records (source_file, line_number, raw, reasons, checkpoint_id)
                SELECT 'a.csv', 4, '{}', '[{"field":"price","reason":"must be > 0","value":"-1"}]', id FROM c
                """)
            try db.query(
                """
                INSERT INTO ecommerce_events (event_id, user_id, product_id, event_type, price, event_timestamp)
                VALUES (gen_random_uuid(), 1, 2, 'view', NULL, now()), (gen_random_uuid(), 3, 4, 'purchase', 12.50, now())
                """)
            let from = "2000-01-01T00:00:00Z"
            let to = "2100-01-01T00:00:00Z"
            for panel in sqlPanels {
                for query in panel.queries {
                    let sql = try Self.expandMacros(query, from: from, to: to)
                    #expect(!sql.contains("$__"), "\(panel.title): a macro the test does not expand: \(sql)")
                    let rows = try db.query(sql)
                    #expect(!rows.isEmpty, "\(panel.title): no rows")
                    #expect(rows.allSatisfy { Double($0.first.flatMap { $0 } ?? "") != nil }, "\(panel.title): first column is not a time")
                }
            }
        }
    }

    @Test func everyPrometheusPanelNamesExportedMetrics() throws {
        let exported = Set(
            String(decoding: LoadMetrics().exposition(), as: UTF8.self).split(separator: "\n")
                .filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) })
        let promPanels = try Self.panels().filter { $0.datasource == "ingest-prometheus" }
        #expect(promPanels.count >= 4)
        let name = try Regex(#"ingest_[a-z_]+"#)
        for panel in promPanels {
            for query in panel.queries {
                let names = query.matches(of: name).map { String(query[$0.range]) }
                #expect(!names.isEmpty, "\(panel.title): \(query)")
                for n in names {
                    let base = n.replacing(try Regex(#"_(bucket|sum|count)$"#), with: "")
                    #expect(exported.contains(base), "\(panel.title): \(n) is not a metric load exports")
                }
            }
        }
        // The example alerts are valid rules and name exported metrics too.
        let check = try runTool(
            URL(fileURLWithPath: "/usr/bin/promtool"),
            ["check", "rules", Self.root.appendingPathComponent("docker/prometheus/alerts.yml").path])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    @Test func datasourcesAreProvisionedWithThePanelsUIDs() throws {
        let provisioning = try String(
            contentsOf: Self.root.appendingPathComponent("docker/grafana/provisioning/datasources/ingest.yml"), encoding: .utf8)
        for uid in Set(try Self.panels().map(\.datasource)) {
            #expect(provisioning.contains("uid: \(uid)"), "datasource \(uid) is not provisioned")
        }
        let dashboards = try String(
            contentsOf: Self.root.appendingPathComponent("docker/grafana/provisioning/dashboards/ingest.yml"), encoding: .utf8)
        #expect(dashboards.contains("path: /var/lib/grafana/dashboards"))
    }

    @Test func composeResolvesWithPrometheusAndGrafana() throws {
        let dir = try TemporaryFolder("compose")
        let fm = FileManager.default
        for item in ["docker-compose.yml", "docker"] {
            try fm.copyItem(at: Self.root.appendingPathComponent(item), to: dir.url.appendingPathComponent(item))
        }
        try fm.copyItem(at: Self.root.appendingPathComponent(".env.example"), to: dir.url.appendingPathComponent(".env"))
        if geteuid() == 0 {  // as ProductTests: the client is a Debian package, installed when missing
            let install = try runTool(
                URL(fileURLWithPath: "/bin/bash"),
                [
                    "-c",
                    "source \(Self.root.path)/bin/lib/common.sh; command -v docker-compose >/dev/null || need_apt_packages docker-compose",
                ], timeout: 300)
            #expect(install.status == 0, "\(install.stderr)")
        }
        let r = try runTool(URL(fileURLWithPath: "/bin/bash"), ["-c", "cd \(dir.url.path) && docker-compose config"])
        #expect(r.status == 0, "\(r.stderr)")
        for service in ["prometheus:", "grafana:", "pipeline:"] {
            #expect(r.stdout.contains("  \(service)\n"), "\(service)")
        }
        #expect(r.stdout.contains("INGEST_METRICS_LISTEN: 0.0.0.0:9187"))
        #expect(r.stdout.contains("/etc/grafana/provisioning"))
        #expect(r.stdout.contains("/etc/prometheus/prometheus.yml"))
        let scrape = try String(contentsOf: Self.root.appendingPathComponent("docker/prometheus/prometheus.yml"), encoding: .utf8)
        #expect(scrape.contains(#"targets: ["pipeline:9187"]"#))
    }
}
